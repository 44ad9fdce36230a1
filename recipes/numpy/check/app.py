import sys, io
import numpy as np
import numpy.fft, numpy.random, numpy.linalg   # numpy imports these lazily: import in pre-init

def check():
    return (f"numpy {np.__version__}: {np.arange(6).reshape(2,3).sum(axis=0)} "
            f"{np.linalg.norm([3,4])} {np.sort(np.array([3,1,2]))}")

def more():
    a = np.array([[2., 1.], [1., 3.]])
    r = np.random.default_rng(0)
    big = r.integers(0, 1000, 100000)
    return (f"fft={np.fft.fft([1, 0, 0, 0])} rng={np.random.default_rng(1).integers(0, 10, 3)} "
            f"mt={np.random.RandomState(0).rand(2)} solve={np.linalg.solve(a, [3., 5.])} "
            f"eig={np.round(np.linalg.eigvalsh(a), 4)} svd={np.round(np.linalg.svd(a)[1], 4)} "
            f"einsum={np.einsum('ij,ij->', a, a)} hist={np.histogram([1, 2, 2, 3], bins=3)[0]} "
            f"pct={np.percentile(np.arange(11), 50)} poly={np.round(np.polyfit([0, 1, 2], [1, 3, 5], 1), 6)} "
            f"loadtxt={np.loadtxt(io.StringIO('1,2\n3,4'), delimiter=',').sum()} "
            f"argsort_ok={bool((np.diff(big[np.argsort(big, kind='stable')]) >= 0).all())} "
            f"unique_str={np.unique(np.array(['b', 'a', 'b'], dtype=np.dtypes.StringDType()))} "
            f"ld={np.array([1.5], dtype=np.longdouble) * 2} ldsz={np.dtype(np.longdouble).itemsize} "
            f"dt={np.datetime64('2024-01-01') + np.timedelta64(1, 'D')} nan={np.nanmean([1, np.nan, 3])}")

print("PREINIT:", check(), more(), file=sys.stderr)

class Run:
    def run(self) -> None:
        print("RUN:", check())
        print("RUN2:", more())
        try:
            np.fft.fft([])
        except ValueError as e:
            print("RUN3: fft([]) ->", e)
