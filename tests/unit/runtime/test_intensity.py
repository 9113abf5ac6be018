from stalwart.runtime._intensity import RestartIntensity
from stalwart.testing import FakeClock


def test_default_five_in_sixty_allows_five_and_refuses_the_sixth():
    clock = FakeClock()
    intensity = RestartIntensity(5, 60.0, clock)
    assert [intensity.record() for _ in range(5)] == [True] * 5
    assert intensity.record() is False


def test_old_restarts_leave_the_window():
    clock = FakeClock()
    intensity = RestartIntensity(2, 10.0, clock)
    assert intensity.record() and intensity.record()
    clock.advance(10.0)  # both are now exactly `period` old: out of the window
    assert intensity.record() is True
    assert intensity.recent == 1


def test_restarts_spread_out_never_give_up():
    clock = FakeClock()
    intensity = RestartIntensity(1, 5.0, clock)
    for _ in range(100):
        assert intensity.record()
        clock.advance(5.01)


def test_zero_intensity_gives_up_on_the_first_restart():
    assert RestartIntensity(0, 60.0, FakeClock()).record() is False
