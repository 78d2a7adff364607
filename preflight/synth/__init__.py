"""The synthetic warehouse: a generator of labelled sample folders, a product of its own.

It is the demo's world and the tests' fixture, and the only code that knows that world's classes,
cameras and slice values (the rest of the library learns them from the data and the settings).
:mod:`~preflight.synth.scene` samples the world (its taxonomy, cameras, profiles, edge-case rates,
the objects of a burst and each frame's conditions), :mod:`~preflight.synth.draw` paints objects
and backgrounds with exact visible-extent labels, :mod:`~preflight.synth.effects` applies the
post-render edge cases, :mod:`~preflight.synth.generate` writes a sample in the
docs/CONTRACTS.md layout (``manifest.json`` and ``_COMPLETE`` last) and
:mod:`~preflight.synth.cli` is ``preflight synth``. It builds on ``preflight.data`` (the landing
zone's manifest and marker); nothing in ``preflight.data`` imports it.
"""
