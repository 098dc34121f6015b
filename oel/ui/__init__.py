"""`oel ui`: a read-only web view of the experience store (runs, episodes, tokens, groups, knowledge).

`app.create_app(url)` builds the Starlette application; `charts` draws its
SVG charts server-side (nothing is loaded from a CDN); `tokens` colours a
reply's tokens by their log-probabilities. See docs/architecture.md.
"""
