"""The latent explorer (``diffdrl explore RUN``): a local web app to play with a run's units.

``uploads`` checks and resizes uploaded images, ``render_queue`` batches every request for the
model through one worker with a bounded cache, ``session`` holds a run's state and the operations
(with ``sliders``: slider ranges and anchors, ``unit_labels``: the cached unit-factor fit,
``image_store``: the images by id, ``overlays``: attention maps as PNGs), ``app`` is the Starlette
app and its routes (``request_body``: body checks), and ``static/`` the page (plain HTML/JS/CSS,
served locally: no CDN, no build step).
"""
