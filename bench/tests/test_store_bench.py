"""bench/store_bench.py measures what it says: one figure per layout, and the gate filter."""

from bench import store_bench


def test_each_layout_stores_its_rows_and_reports_a_cost() -> None:
    figures = store_bench.measure(quick=True, entries=600)

    names = [figure.name for figure in figures]
    for layout in store_bench.LAYOUTS:
        assert f"SQLite CPU per stored event, {layout.name}" in names
    costs = [figure for figure in figures if figure.unit == "us"]
    assert len(costs) == len(store_bench.LAYOUTS) and all(f.value > 0 for f in costs)
    [gate_filter] = [figure for figure in figures if figure.unit == "ms"]
    # Whole commits of 300: 600 + 10,200 rows over 500 gates; the total counts them all.
    assert gate_filter.note.endswith("of 10,800 entries; from the (ts, device_id) index")
