from toolkit.report.units import duration, rate, ratio, significant


def test_duration_picks_readable_units():
    assert duration(6.6e-6, 2) == "6.6 µs"
    assert duration(0.0013) == "1.30 ms"
    assert duration(1.7, 2) == "1.7 s"
    assert duration(4.2e-8) == "42.0 ns"
    assert duration(None) == "-"


def test_ratio_uses_powers_of_ten_beyond_1e5():
    assert ratio(7_612) == "7,600×"
    assert ratio(257_000) == "2.6×10^5"
    assert ratio(1.26) == "1.3×"
    assert ratio(0) == "-"


def test_significant_and_rate():
    assert significant(0.012345, 2) == "0.012"
    assert significant(123_456, 3) == "123,000"
    assert rate(2_890_000) == "2.89M rows/s"
    assert rate(965) == "965 rows/s"
