"""The resident engine: background removal, SDXL + ControlNet generation, compositing.

Nothing here imports Django: it takes plain data (images, numbers, paths) and returns images,
figures and events, so it runs the same in a worker, a benchmark or a notebook.
"""
