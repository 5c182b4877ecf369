"""``nextbest report``: what the suggestions brought against the global control group, and
the service's own figures, as ``report.json`` and one self-contained HTML page."""
