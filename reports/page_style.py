"""The review page's stylesheet, inlined into ``report.html`` (no font or file is fetched: system fonts only).

Readable type (system UI font, 15 px, 1.5 line height, a ~75-character text column), tables that scroll
inside their own box with sticky header rows, numbers right-aligned in tabular figures, a sticky contents bar.
"""

CSS = """
:root { --fg: #1d2330; --muted: #5b6475; --line: #d9dde5; --head: #f1f3f7; --accent: #2457c5;
        --bad: #a4262c; --warn: #8a5a00; --ok: #23723a; }
* { box-sizing: border-box; }
html { scroll-padding-top: 3.2rem; }
body { margin: 0; color: var(--fg); background: #fff; font: 15px/1.5 system-ui, -apple-system, "Segoe UI",
       Roboto, "Noto Sans", "DejaVu Sans", sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 0 1.2rem 4rem; }
nav { position: sticky; top: 0; z-index: 5; background: #fffffff0; border-bottom: 1px solid var(--line);
      padding: .45rem 1.2rem; font-size: 14px; white-space: nowrap; overflow-x: auto; }
nav a { color: var(--accent); text-decoration: none; margin-right: 1.1rem; }
nav a:hover { text-decoration: underline; }
h1 { font-size: 1.6rem; margin: 1.4rem 0 .3rem; }
h2 { font-size: 1.3rem; margin: 2.2rem 0 .6rem; padding-top: .4rem; border-top: 2px solid var(--line); }
h3 { font-size: 1.08rem; margin: 1.4rem 0 .4rem; }
p, li { max-width: 75ch; }
p, li, figcaption, summary { overflow-wrap: anywhere; }  /* long paths and sources wrap, never widen the page */
.muted, .note { color: var(--muted); font-size: 13.5px; }
.note { white-space: pre-line; }
code, pre { font: 13px/1.45 ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
pre { background: #f7f8fa; border: 1px solid var(--line); padding: .6rem .8rem; overflow: auto; max-height: 28rem; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: .8rem 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.scroll { overflow: auto; max-height: 70vh; border: 1px solid var(--line); margin: .4rem 0 .6rem; }
table { border-collapse: separate; border-spacing: 0; font-size: 13.5px; width: max-content; min-width: 100%; }
th, td { padding: .28rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
thead th { position: sticky; top: 0; z-index: 1; background: var(--head); text-align: left;
           border-bottom: 1px solid #b9c0cc; }
tbody tr:nth-child(even) td { background: #fafbfc; }
td { font-variant-numeric: tabular-nums; }
td[style*="right"], th[style*="right"] { white-space: nowrap; }
sup { color: var(--warn); font-weight: 600; }
.tag { display: inline-block; padding: 0 .4rem; border-radius: .6rem; font-size: 12px; border: 1px solid; }
.tag.done { color: var(--ok); } .tag.incomplete, .tag.failed { color: var(--bad); } .tag.missing { color: var(--warn); }
details { margin: .3rem 0; }
details > summary { cursor: pointer; color: var(--accent); }
section.run { border-left: 3px solid var(--line); padding-left: .8rem; margin: 1rem 0; }
figure { margin: .8rem 0; }
.figs { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 520px), 1fr)); gap: 0 1.2rem; }
figure svg { max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 13px; }
ol.notes li, ul.sources li { font-size: 13.5px; }
@media (max-width: 700px) { body { font-size: 14px; } main { padding: 0 .6rem 3rem; }
  dl.facts { grid-template-columns: 1fr; } dl.facts dd { margin-bottom: .3rem; } }
"""
