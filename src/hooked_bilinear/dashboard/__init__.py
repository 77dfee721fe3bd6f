"""Dashboards: one self-contained HTML file (vanilla JS, everything inlined, opens offline from file://) that shows
what a bilinear layer computes, read from its weights plus one pass over a token set.

data.py         the language-model data: per output direction, its spectrum, eigenvectors, top contexts with
                per-token contributions lambda (v . x')^2, token read-outs; SAE feature interactions D Q_u D^T
classifier.py   the image-classifier data: eigen-images per class, the test images that drive them, adversarial masks
html.py         the page: template.html + dashboard.css + dashboard.js + the data, inlined; read_data reads it back
build.py        write_dashboard (a bridge's layer) and write_classifier_dashboard (a classifier)
shipped.py      defaults for the shipped ts-synthetic-2l: held-out tokens, shipped SAEs, directions
"""

from hooked_bilinear.dashboard.build import DashboardFile, write_classifier_dashboard, write_dashboard
from hooked_bilinear.dashboard.html import read_data

__all__ = ["DashboardFile", "read_data", "write_classifier_dashboard", "write_dashboard"]
