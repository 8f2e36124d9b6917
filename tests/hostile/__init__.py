"""Hostile input, for every subject of the catalogue (issue 13, item 2).

- `corpus`: the refused variants of a request, derived from its contract and one valid example.
- `examples`: one valid example per route, and what emits each topic (the coverage rule's lists).
- `world`: the tenants and parties the examples are made from.
- `writes`: what "nothing was written" means, for any tenant, over every worker schema and the stream.
- `fuzzing`: Hypothesis profiles (`HYPOTHESIS_PROFILE=deep` for long local runs).
"""
