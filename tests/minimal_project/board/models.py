from django.db import models


class Post(models.Model):
    """A post on a topic; ``offset`` numbers a topic's posts 1, 2, 3, … with no gap."""

    topic = models.SlugField()
    offset = models.PositiveBigIntegerField()
    author = models.CharField(max_length=150)
    text = models.CharField(max_length=500)
    objects: models.Manager["Post"] = models.Manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["topic", "offset"], name="post_offset")]

    def __str__(self) -> str:
        return f"{self.topic}#{self.offset}"

    @staticmethod
    def last_offset(topic: str) -> int:
        """The topic's newest offset, 0 when it has none."""
        return Post.objects.filter(topic=topic).aggregate(n=models.Max("offset"))["n"] or 0

    def data(self) -> dict[str, str]:
        """The ``board.post`` event's data: ``{author, text}``."""
        return {"author": self.author, "text": self.text}
