"""Hook implementations only: `aiperf --help` imports this module, so it imports nothing heavy."""

from aiperf import hookimpl


@hookimpl
def aiperf_register_options(register):
    from aiperf import PluginOptions

    from aiperf_sink_jsonl_http.options import JsonlHttpOptions

    register(PluginOptions(name="jsonl-http", options=JsonlHttpOptions, title="JSON lines over HTTP"))


@hookimpl
def aiperf_live_sinks(config, run):
    from aiperf import read_options

    from aiperf_sink_jsonl_http.options import JsonlHttpOptions

    url = read_options(JsonlHttpOptions, config).url
    if url is None:
        return None
    from aiperf_sink_jsonl_http.sink import JsonlHttpSink  # the real work, only when used

    return [JsonlHttpSink(url)]
