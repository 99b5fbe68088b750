"""Transport: frames, 16-bit wire with float32 sums, matched receives, an idle ps that sleeps."""

import numpy as np
import pytest
from ps_job import reference, run

from hpcdist.ps import transport as tp


def test_a_frame_carries_its_header_and_payload_in_one_buffer():
    f = tp.Frame(5, np.float32)
    f.set(kind=tp.PUSH, worker=3, version=17, samples=16, remaining=2, extra=1, scale=0.25)
    f.payload[:] = np.arange(5)
    view = tp.Frame(5, np.float32)
    view.buf[:] = f.buf  # what a receive into another frame sees
    assert [view.get(k) for k in ("kind", "worker", "version", "samples", "remaining")] == [
        tp.PUSH, 3, 17, 16, 2,
    ]  # fmt: skip
    assert view.scale == 0.25 and view.payload.tolist() == [0, 1, 2, 3, 4]
    assert f.nbytes == tp.HEADER_BYTES + 20


@pytest.mark.parametrize("name, rel", [("none", 2.0**-22), ("bf16", 2.0**-8), ("fp16", 2.0**-11)])
def test_the_wire_is_16_bit_and_the_ps_sums_in_float32(name, rel):
    codec = tp.Codec(name, np.float32)
    rng = np.random.default_rng(0)
    parts = [rng.standard_normal(1000) * 10.0 ** rng.integers(-3, 3) for _ in range(3)]
    total = np.zeros(1000, codec.sum_dtype)
    for x in parts:
        frame = codec.frame(1000)
        scale = codec.encode_into(frame, x.astype(np.float32))
        frame.set(kind=tp.PUSH, scale=scale)
        assert frame.payload.dtype.itemsize == (4 if name == "none" else 2)
        codec.decode(frame, out=total, add=True)
    assert codec.sum_dtype == np.float32
    exact = np.sum(parts, axis=0)  # float64
    bound = rel * sum(np.abs(x) for x in parts) + 1e-6 * np.abs(exact) + 1e-30
    assert (np.abs(total - exact) <= bound).all()


@pytest.mark.mpi
def test_an_idle_ps_does_not_spin_a_core(comm):
    if comm.size < 2:
        pytest.skip("needs a ps and a worker")
    result = run(1, "sgd", steps=4, delay=1.5)  # the workers start 1.5 s late
    if result["role"] == "ps":
        wall, cpu = result["serve_wall_s"], result["serve_cpu_s"]
        assert wall > 1.2
        assert cpu < 0.25 * wall, (cpu, wall)
    assert result["role"] == ("ps" if comm.rank == 0 else "worker")


@pytest.mark.mpi
@pytest.mark.parametrize("compression, rtol", [("bf16", 2e-2), ("fp16", 4e-3)])
def test_16_bit_pushes_and_pulls_stay_near_the_float64_replay(comm, compression, rtol):
    if comm.size < 2:
        pytest.skip("needs a ps and a worker")
    result = run(1, "sgd", steps=4, compression=compression)
    events = comm.allgather(result["stats"]["events"] if result["role"] == "ps" else None)[0]
    if result["role"] == "worker":
        want = reference("sgd", events, comm.size - 1)
        for got, ref in zip(result["params"], want, strict=True):
            np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol)
            assert np.abs(got - ref).max() > 0  # 16 bits really were on the wire
