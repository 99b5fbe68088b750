"""The study of the seed's exercise 10: the same network trained six ways, measured and compared.

    python -m hpcdist.study --quick --run-dir runs/study     # CI size, a minute or two

forms.py holds the six forms as data, run.py runs one as its own mpiexec job
and reads its metrics, report.py / conclusion.py / writer.py turn the runs
into D/report.md, its plots and a conclusion computed from the table.
"""

from .conclusion import conclusion
from .forms import Form, Plan, forms
from .report import Row, ranking, summarize, table
from .run import Run, run_form
from .writer import write

__all__ = [
    "Form",
    "Plan",
    "Row",
    "Run",
    "conclusion",
    "forms",
    "ranking",
    "run_form",
    "summarize",
    "table",
    "write",
]
