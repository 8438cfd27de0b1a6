"""The latent explorer (``diffdrl explore RUN``): a local web app to play with a run's units.

``uploads`` checks and resizes uploaded images, ``render_queue`` batches every request for the
model through one worker with a bounded cache, ``session`` holds a run's state (slider ranges,
labels, anchors, images) and the operations, ``app`` is the Starlette app and its routes, and
``static/`` the page (plain HTML/JS/CSS, served locally: no CDN, no build step).
"""
