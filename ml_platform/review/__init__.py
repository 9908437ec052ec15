"""`ml-platform review`: a model change judged before it merges, against production, read-only.

- `changes`: which models a change adds, removes or changes, which spec fields and derived-feature functions
  moved, and what the merge would rebuild (pure: specs in, records out);
- `candidate`: the changed model trained on the data its champion was trained on and scored beside it on the
  same held-out days, with the spec's gates; production is only read;
- `report`: the verdict as Markdown for a pull-request comment and as JSON.
"""
