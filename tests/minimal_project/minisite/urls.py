from django.urls import URLPattern

# The socket is the whole interface (minisite.asgi routes /ws/); no page is served.
urlpatterns: list[URLPattern] = []
