"""``kx serve``: the plan's review in a browser, over the same acts and queries as the command line.

Server-rendered pages (Jinja2, autoescaped) on Starlette and uvicorn, plain forms, and one small script of
ours that keeps a page current from the ledger's event stream. Nothing here is a way around the ledger:
every change goes through ``machine.acts`` exactly as ``kx review`` and ``kx reopen`` do.
"""
