"""`mgc annotate`: refine candidate or predicted masks in the browser and save them where `mask_source: manifest`
finds them (session.py: data and files; queues.py: which windows; app.py: the local web server; static/: the page)."""
