"""The plain-text tables of `stalwart chaos`, `load` and `soak`."""

from stalwart.chaos._report import table


def test_a_table_with_no_rows_prints_its_header():
    """A chaos run that applied no fault has an empty fault table: header only, no crash."""
    assert table(["fault", "applied"], []).splitlines() == ["fault  applied", "-----  -------"]


def test_columns_fit_the_widest_cell():
    assert table(["fault", "n"], [["agent_kill", 12], ["sim", 3.5]]).splitlines() == [
        "fault           n",
        "----------  -----",
        "agent_kill     12",
        "sim         3.500",
    ]
