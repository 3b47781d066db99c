"""The monthly hazard report, per site and per city, as PDF and XLSX: figures from the alert store and
InfluxDB computed once (figures.py, series.py), laid out once (sections.py), drawn twice (pdf.py,
xlsx.py), archived with each file's SHA-256 on a schedule (archive.py). See docs/reports.md."""
