#!/usr/bin/env python3
"""Writes dashboards/openptl.json, the Grafana dashboard for OpenPTL.

The dashboard is generated so its panels stay consistent; edit this file and
run it again (`python3 deploy/grafana/make_dashboard.py`). `check.py` lints
every query with promtool.
"""
import json
import os

DS = {"type": "prometheus", "uid": "openptl-prometheus"}
panels = []
y = 0


def row(title):
    global y
    panels.append({"type": "row", "title": title, "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "id": len(panels) + 1, "panels": []})
    y += 1


def panel(title, kind, targets, x, w, h=8, unit=None, description="", stack=False, thresholds=None):
    p = {
        "id": len(panels) + 1,
        "title": title,
        "description": description,
        "type": kind,
        "datasource": DS,
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "targets": [
            {"refId": chr(65 + i), "datasource": DS, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {},
    }
    if unit:
        p["fieldConfig"]["defaults"]["unit"] = unit
    if stack:
        p["fieldConfig"]["defaults"]["custom"] = {"stacking": {"mode": "normal", "group": "A"}, "fillOpacity": 60}
    if thresholds:
        p["fieldConfig"]["defaults"]["thresholds"] = {"mode": "absolute", "steps": thresholds}
    panels.append(p)


row("PTL")
panel("Open pathways by trust", "timeseries",
      [('sum by (trust) (openptl_open_pathways{trust=~"$trust"})', "{{trust}}")], 0, 8, stack=True,
      description="Pathways on the PTL (any clock running), by current trust.")
panel("PTL by wait band", "bargauge",
      [('sum by (band) (openptl_open_pathways{trust=~"$trust"})', "{{band}}")], 8, 8,
      description="62-day wait bands (SPEC 2.10); `none`: only the 31-day clock runs.")
panel("Over 62 days (backlog) and over 104", "timeseries",
      [('sum by (trust) (openptl_open_pathways{trust=~"$trust",band=~"63-104|105\\\\+"})', "{{trust}} >62"),
       ('sum by (trust) (openptl_open_pathways{trust=~"$trust",band="105+"})', "{{trust}} >104")], 16, 8)
y += 8

row("Breach risk")
panel("Clocks breaching within 7 days", "timeseries",
      [('sum by (trust, clock) (openptl_clocks_due_to_breach_within_7_days{trust=~"$trust"})', "{{trust}} {{clock}}")],
      0, 12, description="Running clocks whose first breach day is within a week: act now.")
panel("Open breached clocks", "timeseries",
      [('sum by (trust, clock) (openptl_open_breached_clocks{trust=~"$trust"})', "{{trust}} {{clock}}")], 12, 12)
y += 8
panel("Breach risk by tumour site", "bargauge",
      [('sum by (tumour_site) (openptl_clocks_due_to_breach_within_7_days{trust=~"$trust"})', "{{tumour_site}}")],
      0, 12)
panel("Overdue BPTP milestones by tumour site", "bargauge",
      [('sum by (tumour_site) (openptl_overdue_milestones{trust=~"$trust"})', "{{tumour_site}}")], 12, 12)
y += 8
panel("Subsequent treatments: due within 7 days and breached", "timeseries",
      [('sum by (trust) (openptl_clocks_due_to_breach_within_7_days{trust=~"$trust",clock="d31_subsequent"})', "{{trust}} due"),
       ('sum by (trust) (openptl_open_breached_clocks{trust=~"$trust",clock="d31_subsequent"})', "{{trust}} breached")],
      0, 24, description="Treated patients waiting for a subsequent treatment (SPEC 2.12; the `subsequent_treatment` worklist).")
y += 8

row("Performance this month against target")
for i, (clock, title) in enumerate([("fds", "Faster Diagnosis Standard (28 days)"),
                                    ("d62", "62-day (shares after transfers)"),
                                    ("d31", "31-day (every treatment period)")]):
    panel(title, "timeseries",
          [(f'openptl_standard_performance_percent{{clock="{clock}",trust=~"$trust"}}', "{{trust}}"),
           (f'openptl_projected_performance_percent{{clock="{clock}",trust=~"$trust"}}', "{{trust}} projected month end"),
           (f'max(openptl_standard_target_percent{{clock="{clock}"}})', "operational target")],
          i * 8, 8, unit="percent")
y += 8
panel("Alliance performance (all trusts)", "stat",
      [(f'100 * sum(openptl_standard_clocks_stopped{{clock="{c}",status="met"}}) / sum(openptl_standard_clocks_stopped{{clock="{c}"}})', c)
       for c in ("fds", "d31", "d62")], 0, 24, h=5, unit="percent",
      thresholds=[{"color": "red", "value": None}, {"color": "orange", "value": 75}, {"color": "green", "value": 85}])
y += 5

row("Lower GI and FIT this month")
panel("Lower GI urgent referrals with a FIT result", "timeseries",
      [('openptl_fit_percent{measure="with_fit",trust=~"$trust"}', "{{trust}}"),
       ('max(openptl_fit_target_percent{measure="with_fit"})', "target (at least)")],
      0, 8, unit="percent",
      description="A FIT result dated up to 90 days before referral (SPEC 2.6); the FIT page has the trend and the bands.")
panel("Colonoscopies without a FIT result", "timeseries",
      [('openptl_fit_percent{measure="colonoscopies_without_fit",trust=~"$trust"}', "{{trust}}"),
       ('max(openptl_fit_target_percent{measure="colonoscopies_without_fit"})', "target (fewer than)")],
      8, 8, unit="percent")
panel("Colonoscopies on FIT below 10", "timeseries",
      [('openptl_fit_pathways{measure="colonoscopies_fit_below_10",trust=~"$trust"}', "{{trust}}")],
      16, 8, description="Patients whose FIT on the day of the colonoscopy was below 10 µg/g; the fit_below_10 worklist is the safety-netting review.")
y += 8

row("Service health")
panel("Events appended per second by type", "timeseries",
      [("sum by (type) (rate(openptl_events_appended_total[5m]))", "{{type}}")], 0, 8, unit="ops", stack=True)
panel("Append latency", "timeseries",
      [("histogram_quantile(0.5, sum by (le) (rate(openptl_append_duration_seconds_bucket[5m])))", "p50"),
       ("histogram_quantile(0.99, sum by (le) (rate(openptl_append_duration_seconds_bucket[5m])))", "p99")],
      8, 8, unit="s")
panel("HTTP requests by route and status", "timeseries",
      [("sum by (route, status) (rate(openptl_http_requests_total[5m]))", "{{route}} {{status}}")], 16, 8, unit="reqps")
y += 8
panel("Append errors by code", "timeseries",
      [("sum by (status) (rate(openptl_append_errors_total[5m]))", "{{status}}")], 0, 8, unit="ops")
panel("Projection lag", "timeseries",
      [("max(openptl_projection_lag_seconds)", "seconds behind"),
       ("max(openptl_projection_lag_events)", "events behind")], 8, 8)
panel("Log and index on disk", "timeseries",
      [("sum(openptl_log_size_bytes)", "segments"), ("sum(openptl_index_size_bytes)", "sled index")],
      16, 8, unit="bytes")
y += 8

dashboard = {
    "uid": "openptl",
    "title": "OpenPTL — cancer PTL and service health",
    "tags": ["openptl", "cancer", "ptl"],
    "timezone": "Europe/London",
    "schemaVersion": 39,
    "version": 1,
    "refresh": "30s",
    "time": {"from": "now-7d", "to": "now"},
    "templating": {"list": [{
        "name": "trust", "label": "Trust", "type": "query", "datasource": DS,
        "query": {"query": "label_values(openptl_open_pathways, trust)", "refId": "trust"},
        "definition": "label_values(openptl_open_pathways, trust)",
        "includeAll": True, "multi": True, "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "refresh": 2,
    }]},
    "panels": panels,
}
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "dashboards", "openptl.json"), "w") as f:
    json.dump(dashboard, f, indent=2)
    f.write("\n")
