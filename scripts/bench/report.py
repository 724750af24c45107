"""The benchmark's printed lines and the figures section of docs/BENCHMARKS.md.

Every ratio is printed on its own line as ``ratio <name>: <value> (target <target>)``; absolute
figures as ``figure <name>: <value> <unit> (target …)``.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from scripts.bench.common import figure_line, ratio_line
from scripts.bench.memory import product_pss_mib

PANEL_TARGET_MS = 50.0
EXPORT_TARGET_MIB = 200.0  # a year's orders as XLSX (issue 14): the export process's peak RSS
DOC = Path(__file__).resolve().parents[2] / "docs" / "BENCHMARKS.md"
README = Path(__file__).resolve().parents[2] / "README.md"
BEGIN, END = "<!-- bench:figures:begin -->", "<!-- bench:figures:end -->"


def _ms(seconds: float) -> float:
    return seconds * 1000


def checkout_lines(results: dict[str, Any]) -> list[str]:
    lines = []
    o = results.get("overhead")
    if o:
        lines += [
            figure_line("checkout_median", _ms(o["ours_median_s"]), "ms"),
            figure_line("checkout_p95", _ms(o["ours_p95_s"]), "ms"),
            figure_line("floor_median", _ms(o["floor_median_s"]), "ms"),
            figure_line("floor_p95", _ms(o["floor_p95_s"]), "ms"),
            figure_line("checkout_vs_floor_median", f"{o['ratio_median']:.2f}"),
            figure_line("checkout_vs_floor_p95", f"{o['ratio_p95']:.2f}"),
            figure_line("checkout_overhead_median", _ms(o["ours_overhead_median_s"]), "ms (total − time in emulators)"),
            figure_line("checkout_overhead_p95", _ms(o["ours_overhead_p95_s"]), "ms"),
            figure_line("floor_overhead_median", _ms(o["floor_overhead_median_s"]), "ms (floor − time in emulators)"),
            # issue 15: our own overhead against the floor's whole sequence, and how steady it is
            ratio_line("checkout_overhead_vs_floor", o["ours_overhead_median_s"] / o["floor_median_s"], "≤ 3.5"),
            ratio_line("checkout_overhead_p95_vs_median", o["ours_overhead_p95_s"] / o["ours_overhead_median_s"],
                       "≤ 2"),
        ]
    p = results.get("parallel")
    if p:
        lines += [
            figure_line("parallel_wall", p["wall_s"], "s"),
            figure_line("parallel_one_kiosk_serial", p["floor_serial_s"], "s (floor lane, measured in the same run)"),
            ratio_line("parallel_kiosks_vs_serial", p["ratio"], "≤ 1.1"),
            ratio_line("parallel_kiosks_vs_nominal", p["ratio_nominal"], "≤ 1.1"),
        ]
    b = results.get("job_burst")
    if b:
        lines += [
            figure_line("checkout_alone_median", _ms(b["alone_median_s"]), "ms (realistic delays)"),
            figure_line("checkout_under_job_burst_median", _ms(b["under_burst_median_s"]),
                        f"ms ({b['burst_requests']} job requests for another kiosk)"),
            ratio_line("checkout_under_job_burst_vs_alone", b["ratio"], "≤ 1.2"),
            figure_line("job_burst_jobs_started", str(b["jobs_started"]),
                        f"jobs for {b['repeats'] * b['burst_requests']} requests ({b['jobs_deferred']} waited)"),
        ]
    m = results.get("memory")
    if m:
        for name, mem in m.items():
            lines.append(figure_line(f"memory_{name}_peak_max", mem["peak_max_mib"], "MiB (largest process)"))
            lines.append(figure_line(f"memory_{name}_peak_sum", mem["peak_sum_mib"],
                                     f"MiB (sum over {mem['processes']} processes)"))
            if "pss_sum_mib" in mem:
                lines.append(figure_line(f"memory_{name}_pss", mem["pss_sum_mib"], "MiB (PSS, shared pages split)"))
        lines.append(figure_line("memory_pss_10", product_pss_mib(m), "MiB"))
    return lines


def kiosks30_lines(results: dict[str, Any], pss_10: float | None = None) -> list[str]:
    """The 30-kiosk run (scripts/bench/kiosks30.py); ``pss_10``: the product's PSS after the 10-kiosk run."""
    k = results.get("kiosks30")
    if not k:
        return []
    idle, poll = k["status_poll_idle"], k["status_poll"]
    lines = [
        figure_line("parallel30_wall", k["wall_s"], f"s ({k['kiosks'] - (1 if k['slow_kiosk'] else 0)} kiosks "
                                                    f"without the slow guest, until the last finished)"),
        figure_line("parallel30_one_kiosk_serial", k["floor_serial_s"], "s (floor lane, measured in the same run)"),
        figure_line("parallel30_slow_kiosk", k["slow_kiosk_wall_s"],
                    f"s ({k['slow_kiosk']}: one card of {k['slow_card_s']:.0f} s)" if k["slow_kiosk"] else "s (none)"),
        ratio_line("parallel_kiosks30_vs_serial", k["ratio"], "≤ 1.1"),
        figure_line("status_poll_idle_p95", idle["p95_ms"], f"ms ({idle['count']} GETs on the idle server)"),
        figure_line("status_poll_p95", poll["p95_ms"], "ms"),
        ratio_line("status_poll_p95_vs_idle", k["ratio_poll"], "≤ 3"),
        figure_line("parallel30_errors", str(k["errors_total"])),
    ]
    pss_30 = results.get("memory_pss_mib")
    if pss_30 is not None:
        lines.append(figure_line("memory_pss_30", pss_30, "MiB"))
        if pss_10:
            lines.append(ratio_line("memory_pss_30_vs_10", pss_30 / pss_10, "≤ 1.6"))
    return lines


def _count(n: int) -> str:
    """1000000 → 1m, 100000 → 100k, 10000 → 10k."""
    return f"{n // 1_000_000}m" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def panel_lines(results: dict[str, Any]) -> list[str]:
    lines = []
    scales = results.get("scales", {})
    big, small = scales.get("large"), scales.get("small")
    if not big:
        return lines
    for page, data in big["pages"].items():
        if data.get("missing"):
            lines.append(f"figure panel_{page}: page missing ({data['missing']})")
            continue
        target = f"≤ {PANEL_TARGET_MS:.0f} ms" if page in ("venue", "shift", "order", "report_month") else ""
        lines.append(figure_line(f"panel_{page}_median", data["median_ms"], "ms", target))
        lines.append(figure_line(f"panel_{page}_queries", str(data["queries"]), "SQL queries"))
        if page == "report_month" and "first_ms" in data:  # the cold request: it fills the kept day figures
            lines.append(figure_line("panel_report_month_first", data["first_ms"], "ms (first request, cold)"))
    scale = f"{_count(big['orders'])}_vs_{_count(small['orders'])}" if small else ""
    for page in ("venue", "shift", "order"):
        b, s = big["pages"].get(page, {}), (small or {}).get("pages", {}).get(page, {})
        if b.get("median_ms") and s.get("median_ms"):
            lines.append(ratio_line(f"panel_{page}_{scale}", b["median_ms"] / s["median_ms"], "≤ 1.5"))
    export = big.get("export_year_xlsx") or {}
    if export.get("peak_rss_mib"):
        lines.append(figure_line("export_year_xlsx_peak_rss", export["peak_rss_mib"],
                                 f"MiB (XLSX of {export['orders']:,} orders in {export['seconds']} s; "
                                 f"{export['rss_before_mib']} MiB before)", f"≤ {EXPORT_TARGET_MIB:.0f} MiB"))
    elif export:
        lines.append(f"figure export_year_xlsx_peak_rss: not measured ({export.get('missing', export.get('status'))})")
    shift, admin = big["pages"].get("shift", {}), big["pages"].get("admin_shift_orders", {})
    if shift.get("median_ms") and admin.get("median_ms"):
        lines.append(ratio_line("panel_shift_vs_admin_changelist", shift["median_ms"] / admin["median_ms"], "≤ 1.0"))
    return lines


# --- docs/BENCHMARKS.md --------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 1) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


PAGE_PATHS = {
    "venue": "/", "shift": "/shifts/<id>/", "order": "/orders/<uuid>/",
    "admin_shift_orders": "/admin/nekassir/order/?shift__id__exact=<id>", "orders": "/orders/", "journal": "/journal/",
    "report_month": "/reports/?from=<30 days ago>&to=<today>",
}


def _machine_line(results: dict[str, Any]) -> str:
    m = results.get("machine", {})
    kind = "quick" if results.get("quick") else "full"
    return (f"Run of {results.get('finished', '')} ({kind} run, {_fmt(results.get('duration_s', 0.0), 0)} s), "
            f"commit `{m.get('git', '')}`, on: {m.get('cpu', '')}, {m.get('cores')} cores, "
            f"{m.get('memory_gib')} GiB; {m.get('os', '')}; Python {m.get('python', '')}, "
            f"PostgreSQL {m.get('postgresql', '')}, Redis {m.get('redis', '')}.{_probe_text(m.get('probe'))}")


def _probe_text(probe: dict[str, float] | None) -> str:
    """The machine's probe (scripts.bench.common.probe): compare machines by it before comparing milliseconds."""
    if not probe:
        return ""
    return (f" Probe: `sum(range(50))` {probe.get('python_sum_range_50_ns')} ns, a system call "
            f"{probe.get('syscall_getppid_ns')} ns, PostgreSQL `SELECT 1` round trip "
            f"{probe.get('pg_select_1_us', '—')} µs.")


def _checkout_md(c: dict[str, Any]) -> list[str]:
    o = c.get("overhead")
    if not o:
        return []
    stack = c.get("stack", {})
    ms = {k: _fmt(_ms(v)) for k, v in o.items() if k.endswith("_s")}
    out = ["", f"**Checkout, device delays 0** ({o['orders']} orders of ours alternating with as many at the "
           f"floor; {stack.get('web', '')}, PostgreSQL, Redis broker; client settings {stack.get('settings', {})}):",
           "", "| | median | p95 | of which in the emulators (median) |", "|---|---|---|---|",
           f"| kiosk POST → `completed` | {ms['ours_median_s']} ms | {ms['ours_p95_s']} ms "
           f"| {ms['ours_in_emulators_median_s']} ms |",
           f"| floor (wire clients only) | {ms['floor_median_s']} ms | {ms['floor_p95_s']} ms "
           f"| {ms['floor_in_emulators_median_s']} ms |",
           f"| ratio | {_fmt(o['ratio_median'], 2)} | {_fmt(o['ratio_p95'], 2)} | |",
           "", f"Our overhead (total − time in the emulators): median {ms['ours_overhead_median_s']} ms, "
           f"p95 {ms['ours_overhead_p95_s']} ms (the floor's own: {ms['floor_overhead_median_s']} ms).",
           "", "Where a checkout's time goes (medians, from the timestamps the checkout stores):",
           "", "| span | ms |", "|---|---|"]
    out += [f"| {name.replace('_', ' ')} | {_fmt(_ms(value))} |" for name, value in o.get("phases", {}).items()]
    if o.get("failures"):
        out += ["", f"Failures: {o['failures'][:5]}"]
    return out


def _parallel_md(c: dict[str, Any]) -> list[str]:
    p = c.get("parallel")
    if not p:
        return []
    delays = ", ".join(f"{k.replace('_delay', '')} {v} s" for k, v in p["delays"].items())
    out = ["", f"**Parallel kiosks**: {p['kiosks']} kiosks × {p['orders_per_kiosk']} orders, delays: {delays} "
           f"(kiosks poll every {p['kiosk_poll_s']} s). Wall time {_fmt(p['wall_s'])} s; one kiosk's serial device "
           f"time {_fmt(p['floor_serial_s'])} s, measured by a floor lane in the same run (nominal "
           f"{_fmt(p['nominal_serial_s'])} s). An order took {_fmt(p['order_median_s'])} s median, "
           f"{_fmt(p['order_p95_s'])} s p95 (at the floor {_fmt(p['floor_order_median_s'])} s). "
           f"Final statuses: {p['statuses']}."]
    if p.get("errors"):
        out += ["", f"Errors: {p['errors'][:5]}"]
    return out


def _burst_md(c: dict[str, Any]) -> list[str]:
    b = c.get("job_burst")
    if not b:
        return []
    times = ", ".join(f"{_fmt(a, 2)} / {_fmt(u, 2)} s" for a, u in zip(b["alone_s"], b["under_burst_s"], strict=False))
    return ["", f"**Checkout under a burst of panel jobs** (issue 16): kiosk B02's order with the parallel run's "
            f"delays, alone and while one manager account sends {b['burst_requests']} job requests "
            f"({', '.join(b['kinds'])}) at once for kiosk B01, itself busy with a guest's order; {b['repeats']} "
            f"pairs (alone / under the burst): {times}. Ratio of the medians {_fmt(b['ratio'], 2)}. Answers to "
            f"the requests: {b['answers']}; jobs started {b['jobs_started']} ({b['jobs_deferred']} waited for "
            f"B01 off any worker), outcomes {b['job_outcomes']}, unfinished {b['jobs_unfinished']}; orders "
            f"{b['order_statuses']}."]


def _memory_md(c: dict[str, Any]) -> list[str]:
    mem = c.get("memory")
    if not mem:
        return []
    out = ["", "**Memory after the parallel run** (peak RSS = VmHWM of each process; PSS counts a page shared by "
           "forked processes once, split among them: the memory the part really takes):", "",
           "| part | processes | largest peak RSS | sum of peak RSS | sum of PSS now |", "|---|---|---|---|---|"]
    out += [f"| {name} | {v['processes']} | {_fmt(v['peak_max_mib'])} MiB | {_fmt(v['peak_sum_mib'])} MiB | "
            f"{_fmt(v.get('pss_sum_mib', math.nan))} MiB |" for name, v in mem.items()]
    j = c.get("journal")
    if j:
        verdict = "each exactly once" if j["ok"] else "MISMATCH"
        out += ["", f"Emulator journals: {j['completed_orders']} completed orders, {j['sell_receipts']} sell "
                f"receipts, {j['approved_sales']} approved card sales ({verdict})."]
    return out


def _kiosks30_md(part: dict[str, Any], checkout: dict[str, Any]) -> list[str]:
    k = part.get("kiosks30")
    if not k:
        return []
    idle, poll, panel, err = k["status_poll_idle"], k["status_poll"], k["panel"], k["errors"]
    delays = ", ".join(f"{name.replace('_delay', '')} {v} s" for name, v in k["delays"].items())
    slow = (f"{k['slow_kiosk']}'s first card takes {k['slow_card_s']:.0f} s" if k["slow_kiosk"] else "no slow guest")
    every = sorted({f[1] for f in panel["fragments"]} - {None})
    pss_10 = product_pss_mib(checkout["memory"]) if checkout.get("memory") else math.nan
    pss_30 = part.get("memory_pss_mib", math.nan)
    out = ["", f"**Thirty kiosks** ({k['kiosks']} kiosks × {k['orders_per_kiosk']} orders, delays: {delays}; "
           f"{slow}; every kiosk polls its order every {k['kiosk_poll_s']} s; a manager's venue page polls its "
           f"{len(panel['fragments'])} htmx fragments (every {', '.join(f'{e:g} s' for e in every)}); clients in "
           f"{'a process of their own' if k['clients'] == 'process' else 'the emulators’ process'}; device "
           f"cluster: {part.get('stack', {}).get('device_processes')} processes):", "",
           "| | value |", "|---|---|",
           f"| wall time of the {k['kiosks'] - (1 if k['slow_kiosk'] else 0)} other kiosks | {_fmt(k['wall_s'])} s |",
           f"| one kiosk's serial device time (floor lane, same run; nominal {_fmt(k['nominal_serial_s'])} s) "
           f"| {_fmt(k['floor_serial_s'])} s |",
           f"| ratio | {_fmt(k['ratio'], 2)} |",
           f"| an order, median / p95 (at the floor {_fmt(k['floor_order_median_s'])} s) | "
           f"{_fmt(k['order_median_s'])} / {_fmt(k['order_p95_s'])} s |",
           f"| the slow kiosk, all its orders | {_fmt(k['slow_kiosk_wall_s'])} s |",
           f"| status GET on the idle server ({idle['count']}, one every {idle['every_s']} s): median / p95 | "
           f"{_fmt(idle['p50_ms'])} / {_fmt(idle['p95_ms'])} ms |",
           f"| status GET under load ({poll['count']}, {_fmt(poll['per_second'], 0)}/s): median / p95 / max | "
           f"{_fmt(poll['p50_ms'])} / {_fmt(poll['p95_ms'])} / {_fmt(poll['max_ms'])} ms |",
           f"| ratio of the p95s | {_fmt(k['ratio_poll'], 2)} |",
           f"| venue page fragments ({panel['requests']} requests): median / p95 | "
           f"{_fmt(panel['p50_ms'])} / {_fmt(panel['p95_ms'])} ms |",
           f"| errors (HTTP, failed orders or polls, floor, journals) | {k['errors_total']} |",
           f"| CPU of the emulators' / the clients' process | {_fmt(k['cpu']['emulators_process_pct'], 0)} % / "
           f"{_fmt(k['cpu']['clients_process_pct'], 0)} % of a core |",
           f"| product PSS after the 10-kiosk run / after this one | {_fmt(pss_10)} / {_fmt(pss_30)} MiB "
           f"(ratio {_fmt(pss_30 / pss_10, 2)}) |",
           "", f"Final statuses: {k['statuses']}; errors by kind: {err}; connections reopened: {k['reconnects']}."]
    mem = part.get("memory")
    if mem:
        out += ["", "| part, after the 30-kiosk run | processes | largest peak RSS | sum of PSS |", "|---|---|---|---|"]
        out += [f"| {name} | {v['processes']} | {_fmt(v['peak_max_mib'])} MiB | {_fmt(v['pss_sum_mib'])} MiB |"
                for name, v in mem.items()]
    if k.get("error_samples"):
        out += ["", f"Errors: {k['error_samples'][:5]}"]
    return out


def _panel_md(panel: dict[str, Any]) -> list[str]:
    scales = panel.get("scales", {})
    if not scales:
        return []
    heads = " | ".join(f"{s['orders']:,} orders / {s['shifts']:,} shifts" for s in scales.values())
    out = ["", "**Panel pages** (server time, in-process through Django's test client, logged-in superuser, "
           f"median of {panel.get('repeat')} requests after warm-up; SQL queries per page and the slowest one "
           "at the largest scale):", "", f"| page | {heads} | queries | slowest query |",
           "|---|" + "---|" * (len(scales) + 2)]
    largest = scales.get("large") or next(iter(scales.values()))
    for page in largest["pages"]:
        cells = []
        for s in scales.values():
            d = s["pages"].get(page, {})
            cells.append("missing" if d.get("missing") else f"{_fmt(d.get('median_ms', math.nan))} ms")
        d = largest["pages"][page]
        slowest = (d.get("slowest") or [{}])[0]
        sql = slowest.get("sql", "")[:90].replace("|", "\\|")
        slow = f"{_fmt(slowest.get('ms', math.nan))} ms `{sql}…`" if slowest else ""
        out.append(f"| {page} `{PAGE_PATHS.get(page, '')}` | " + " | ".join(cells)
                   + f" | {d.get('queries', '')} | {slow} |")
    for name, gen in panel.get("generation", {}).items():
        out += ["", f"Data `{name}`: generated {gen.get('generated_at')} in {gen.get('seconds')} s, "
                f"{gen.get('size_mib')} MiB."]
    return out


def figures_markdown(results: dict[str, Any]) -> str:
    """The figures section (between the markers) from the results of one run."""
    out = [_machine_line(results), "", "```", *results.get("lines", []), "```"]
    checkout = results.get("checkout", {})
    out += _checkout_md(checkout) + _parallel_md(checkout) + _memory_md(checkout) + _burst_md(checkout)
    out += _kiosks30_md(results.get("kiosks30", {}), checkout)
    out += _panel_md(results.get("panel", {}))
    return "\n".join(out)


def readme_markdown(results: dict[str, Any]) -> str:
    """The README's short figures block: the machine and every printed line (details in the doc)."""
    return "\n".join([_machine_line(results), "", "```", *results.get("lines", []), "```"])


def write_readme(results: dict[str, Any], readme: Path = README) -> None:
    """Replace the README's figures block (between the same markers) with this run's."""
    write_doc(results, readme, readme_markdown(results))


def write_doc(results: dict[str, Any], doc: Path = DOC, body: str | None = None) -> None:
    """Replace the figures section of docs/BENCHMARKS.md (between the markers) with this run's."""
    text = doc.read_text() if doc.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    section = f"{BEGIN}\n{figures_markdown(results) if body is None else body}\n{END}"
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: section, text, flags=re.S)
    else:
        text += "\n" + section + "\n"
    doc.write_text(text)


def stamp() -> str:
    return datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
