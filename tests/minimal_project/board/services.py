from django.db import transaction

from realtime.publish import publish_on_commit

from .models import Post


def post_create(*, author: str, topic: str, text: str) -> Post:
    """Store a post at its topic's next offset; publish ``board.post`` once committed.

    Raises ``ValidationError`` for a bad topic or text. Two writers that read the same
    offset cannot both commit (the unique constraint refuses the second).
    """
    with transaction.atomic():
        post = Post(topic=topic, offset=Post.last_offset(topic) + 1, author=author, text=text)
        post.full_clean(validate_constraints=False)
        post.save()
        publish_on_commit(f"board:{topic}", "board.post", post.data(), offset=post.offset)
    return post
