"""Environmental-sound classification: the library that the pipeline's stages (stages/, run
by ``dvc repro``) and the user commands (``python -m soundclf``) call.

``data`` (where recordings come from), ``features`` (what is computed of a clip),
``models`` (the model registry), ``evaluation`` (rounds, training, scoring), ``reporting``
(tables and figures); ``params``, ``io``, ``table`` and ``trained`` are shared by them all.
"""
