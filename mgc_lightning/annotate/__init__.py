"""`mgc annotate`: refine candidate or predicted masks in the browser and save them where `mask_source: manifest`
finds them.

session (one session's data and files), queues (which windows, in which order), locks (one server per dataset and
preset), app (the local web server); static/ holds the page.
"""

__all__ = ["app", "locks", "queues", "session"]
