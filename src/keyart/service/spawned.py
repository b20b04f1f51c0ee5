"""The main module of the processes ``keyart serve`` spawns (uvicorn's workers, the learner).

``multiprocessing``'s spawn runs the parent's main module again in each child before the child's target;
``keyart.service.server.lean_spawn`` names this one instead of the ``keyart`` console script, so a child
imports only what its target needs (the app, or the learner), not every ``keyart`` command. It imports
nothing and does nothing.
"""
