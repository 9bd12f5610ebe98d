"""Static files storage: hashed names, compressed copies, and hashed ES-module imports."""

from servestatic.storage import CompressedManifestStaticFilesStorage


class StaticStorage(CompressedManifestStaticFilesStorage):
    """ServeStatic's manifest storage that also rewrites ``import … from "./x.js"``.

    Without it, a hashed ``room.<hash>.js`` would import the unhashed ``client.js``, which is
    served with a short cache lifetime and could be stale after a deploy.
    """

    support_js_module_import_aggregation = True
