"""The pipeline's stages: one module per stage of dvc.yaml, each reading its arguments and
params, calling the library (soundclf) and writing its outputs.
"""
