# envd: e2b/data, e2b/chart and application/json formatters (code-interpreter.md §2.5, §3, §5.7).
def _e2b_install_formatters():
    import sys

    from IPython import get_ipython
    from IPython.core.formatters import BaseFormatter, JSONFormatter

    try:
        import orjson
    except ImportError:  # plain json still gives the same data
        orjson = None
    from traitlets import ObjectName, Unicode

    def _frame_to_columns(frame):
        import pandas

        columns = {}
        for name, series in frame.items():
            values = []
            for value in series.tolist():
                if isinstance(value, pandas.Timestamp):
                    value = value.isoformat()
                values.append(value)
            columns[str(name)] = values
        return columns

    class E2BDataFormatter(BaseFormatter):
        format_type = Unicode("e2b/data")
        print_method = ObjectName("_repr_e2b_data_")

        def __call__(self, obj):
            # Only if pandas is already imported: formatting ordinary values costs nothing.
            pandas = sys.modules.get("pandas")
            if pandas is not None and isinstance(obj, pandas.DataFrame):
                try:
                    return _frame_to_columns(obj)
                except Exception:
                    return None
            return super().__call__(obj)

    class E2BChartFormatter(BaseFormatter):
        format_type = Unicode("e2b/chart")
        print_method = ObjectName("_repr_e2b_chart_")

        def __call__(self, obj):
            # Registered after image/png, so the figure is rendered (ticks final) before extraction (§3.1).
            figure = sys.modules.get("matplotlib.figure")
            if figure is not None and isinstance(obj, figure.Figure):
                try:
                    from e2b_charts import chart_figure_to_dict

                    return chart_figure_to_dict(obj)
                except Exception:
                    return {}
            return super().__call__(obj)

    class E2BJSONFormatter(JSONFormatter):
        def __call__(self, obj):
            if isinstance(obj, (list, dict)):
                try:
                    if orjson is not None:
                        encoded = orjson.dumps(
                            obj, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
                        )
                        return orjson.loads(encoded), {"expanded": True}
                    import json

                    return json.loads(json.dumps(obj)), {"expanded": True}
                except TypeError:
                    pass
            return super().__call__(obj)

    ip = get_ipython()
    if ip is None:
        return
    formatter = ip.display_formatter
    formatter.formatters["e2b/data"] = E2BDataFormatter(parent=formatter)
    formatter.formatters["e2b/chart"] = E2BChartFormatter(parent=formatter)
    formatter.formatters["application/json"] = E2BJSONFormatter(parent=formatter)


_e2b_install_formatters()
del _e2b_install_formatters
