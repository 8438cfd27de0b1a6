"""First stages shipped with the package, named in a config as ``model.first_stage.path=builtin:<name>``.

Each folder is a first-stage export (diffusers ``save_pretrained`` plus ``first_stage.json``), made
by a committed command so that it can be remade and checked (``tests/first_stage/test_builtin.py``):

- ``tiny-cpu-first-stage8``: KL autoencoder, synth-shapes3d 32x32 -> 4x8x8 (f = 4), what
  ``tiny-cpu-latent8`` diffuses in. Made by ``make first-stage8`` (``diffdrl train-autoencoder
  --config tiny-cpu-first-stage8``, then the export copied here).
"""
