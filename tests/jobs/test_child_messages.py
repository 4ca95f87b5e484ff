"""What a run's failure tells the worker: a JobError's kind and verdict, typed, without the worker
importing the data package (and its media libraries)."""

from __future__ import annotations

import subprocess
import sys

from ltxtune.errors import ErrorKind, JobError
from ltxtune.jobs.child import Failed, failure_message


def test_a_dataset_error_is_not_retried_and_keeps_its_kind():
    from ltxtune.data.errors import DatasetError, source_error

    assert failure_message(source_error("trainingData.sourceUrl", "HTTP 404")) == Failed(
        "trainingData.sourceUrl not reachable: HTTP 404", kind=ErrorKind.SOURCE, field="dataset.source_url", retryable=False
    )
    assert failure_message(DatasetError("All training videos are too short")).kind is ErrorKind.CONTENT
    assert isinstance(DatasetError("x"), JobError)


def test_any_other_exception_is_an_infrastructure_failure():
    assert failure_message(RuntimeError("CUDA out of memory")) == Failed("RuntimeError: CUDA out of memory", retryable=True)


def test_the_worker_side_imports_no_media_library():
    code = "import sys, ltxtune.jobs.worker, ltxtune.jobs.child; assert not {'av', 'cv2', 'torch'} & set(sys.modules), sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
