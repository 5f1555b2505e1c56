"""`mgc annotate`: refine candidate or predicted masks in the browser and save them where `mask_source: manifest`
finds them.

session (one session's data and files), queues (which windows, in which order), locks (one server per dataset and
preset), listening (the app's loopback socket, bound before anything slow), app (the local web server); static/
holds the page.
"""

__all__ = ["app", "listening", "locks", "queues", "session"]
