"""Self-contained HTML pages: one file each, opened in any browser with no network (images and plots inline).

    html.py      the rendering toolkit: escaping, the page skeleton and style sheet, PNG data URIs, heat maps,
                 SVG histograms and line plots, boxes drawn over images, tables (dependency-free: NumPy, Pillow)
    explain.py   `ssd-np explain`: one image through the SSD, stage by stage, as the reference computes it

Pages draw what `ssd_np.reference` computes; `ssd_np.cli` writes them (atomically). `explain` colours classes as
`ssd-np detect --draw` does (`cli.draw.class_colour`).
"""
