"""A Ray instance for the tests: ``python -m tests.ray_cluster`` starts one (two CPUs, no dashboard),
prints its address, and stops it when its standard input closes.

Run it with ``RAY_ENV`` (``tests/test_ray.py``): loopback only, no usage statistics.
"""

from __future__ import annotations

import sys


def main() -> int:
    import ray

    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="kx-tests")
    print(context.address_info["gcs_address"], flush=True)
    sys.stdin.read()
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
