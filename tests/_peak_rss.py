"""Source text of ``peak_rss()`` for the memory tests' child programs.

The child's own peak resident set size, from ``VmHWM`` in ``/proc/self/status``:
``resource.getrusage(...).ru_maxrss`` keeps the peak of the process image before
``exec``, which for a child of the test run is the test run's own (hundreds of MiB)."""

PEAK_RSS = """
def peak_rss():
    import resource
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
"""
