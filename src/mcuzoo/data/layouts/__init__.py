"""One module per dataset layout, each registered in :mod:`mcuzoo.layouts` (which names the module).

Each has ``load`` (a run's dataset), ``detect`` and ``load_eval`` (``mcuzoo evaluate MODEL DATA``); see
:mod:`mcuzoo.layouts` for their signatures and :mod:`mcuzoo.data.pools` for what they return.
"""
