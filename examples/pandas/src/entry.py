"""pandas on Taipan: POST a CSV, get a summary back as JSON.

    curl --data-binary @sales.csv 'http://127.0.0.1:8787/summary?by=region'

The summary has the row count, each column's dtype, `describe()` of the
numeric columns, sums and means per group (`?by=COLUMN`), a 3-row rolling
mean of the first numeric column, and totals per month when there is a
`date` column.
"""

import io
import json
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
from workers import Response, WorkerEntrypoint

USAGE = "POST a CSV to /summary (optionally ?by=COLUMN) for a JSON summary.\n"


def frame_json(frame, orient="index"):
    # pandas writes the JSON (NaN as null, numpy scalars as numbers).
    return json.loads(frame.to_json(orient=orient, double_precision=6))


def summarize(frame, by):
    numeric = frame.select_dtypes(include="number")
    summary = {
        "rows": len(frame),
        "columns": {name: str(dtype) for name, dtype in frame.dtypes.items()},
        "describe": frame_json(numeric.describe(), orient="columns"),
    }
    if by is not None:
        groups = frame.groupby(by, sort=True)[list(numeric.columns)]
        summary["by"] = by
        summary["sum"] = frame_json(groups.sum())
        summary["mean"] = frame_json(groups.mean().round(4))
        summary["count"] = frame_json(groups.size().rename("rows").to_frame())
    if len(numeric.columns):
        first = numeric.columns[0]
        summary["rolling_mean"] = {
            "column": first,
            "values": frame_json(numeric[first].rolling(3).mean().round(4), orient="values"),
        }
    if "date" in frame.columns:
        dates = pd.to_datetime(frame["date"], format="ISO8601")
        monthly = numeric.groupby(dates.dt.strftime("%Y-%m")).sum()
        summary["monthly"] = frame_json(monthly)
        summary["span_days"] = int((dates.max() - dates.min()) / np.timedelta64(1, "D"))
    return summary


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlparse(request.url)
        if url.path == "/":
            return Response(USAGE)
        if url.path != "/summary":
            return Response.json({"error": "not found"}, status=404)
        if request.method != "POST":
            return Response.json({"error": "POST a CSV"}, status=405, headers={"allow": "POST"})

        by = parse_qs(url.query).get("by", [None])[0]
        try:
            frame = pd.read_csv(io.StringIO(await request.text()))
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as error:
            return Response.json({"error": f"not a CSV: {error}"}, status=400)
        if len(frame) > int(self.env.MAX_ROWS):
            return Response.json({"error": f"more than {self.env.MAX_ROWS} rows"}, status=413)
        if by is not None and by not in frame.columns:
            columns = ", ".join(map(str, frame.columns))
            return Response.json({"error": f"no column {by!r}; columns: {columns}"}, status=400)
        return Response.json(summarize(frame, by))
