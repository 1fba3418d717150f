"""The posterior explorer: a local web page (``jpeg-jax-explore``) over :mod:`jpeg_jax.posterior`.

:mod:`jpeg_jax.explore.server` is the command line and the HTTP API, :mod:`.session` the state
and model work behind it, ``static/`` the page (plain HTML, CSS and JavaScript).
"""
