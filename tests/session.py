"""One browser session of an app built in-process (no server): trigger a listener and the listeners
chained after it (.then, .success) in order, as Gradio does, keeping what they return as the
session's values, and run the change listeners of every gr.State a listener changed, as the
browser does. Enough to check which handlers run, and what they compute, for one user."""

from typing import Any, Callable

import gradio as gr
from gradio.blocks import Block, BlockFunction, convert_component_dict_to_list


class Session:
    def __init__(self, demo: gr.Blocks):
        self.demo = demo
        self.values: dict[int, Any] = {}  # block id → the value last sent to it in this session
        self.finished: list[BlockFunction] = []  # the listeners that ran without an error, in order

    def value(self, block: Block) -> Any:
        """The block's value in this session: the last one sent to it, else its initial value."""
        return self.values.get(block._id, getattr(block, "value", None))

    def set(self, block: Block, value: Any) -> None:
        """What the user typed, picked or dropped into `block`."""
        self.values[block._id] = value

    def trigger(self, block: Block, event: str, event_data: gr.EventData | None = None) -> None:
        """What the browser does when `event` happens on `block` (e.g. "upload", "select"):
        run its listeners and everything chained after them. Listeners that are JavaScript only
        (no Python function) run in the browser, not here."""
        for block_fn in self.demo.fns.values():
            if (block._id, event) in block_fn.targets and block_fn.fn is not None:
                self._run_chain(block_fn, event_data)

    def select_tab(self, tabs: gr.Tabs, tab_id: str) -> None:
        """Open the tab with this id, as a click on it does."""
        self.trigger(next(child for child in tabs.children if isinstance(child, gr.Tab) and child.id == tab_id),
                     "select")

    def _run_chain(self, block_fn: BlockFunction, event_data: gr.EventData | None = None) -> None:
        args = [self.value(block) for block in block_fn.inputs]
        try:  # the event data comes first: the handlers here take it as their first parameter
            result = block_fn.fn(*([event_data] if event_data else []), *args)
        except gr.Error:
            succeeded = False
        else:
            succeeded = True
            self.finished.append(block_fn)
            for state in self._store(block_fn.outputs, result):
                self.trigger(state, "change")
        for after in self.demo.fns.values():
            if after.trigger_after == block_fn._id and (succeeded or not after.trigger_only_on_success):
                self._run_chain(after)

    def _store(self, outputs: list[Block], result: Any) -> list[Block]:
        """Keep `result` as the outputs' values; the gr.State outputs whose value changed."""
        before = {block._id: self.value(block) for block in outputs if isinstance(block, gr.State)}
        if isinstance(result, dict) and result and all(isinstance(key, Block) for key in result):
            result = as_sent(outputs, result)
        elif len(outputs) == 1:
            result = [result]
        elif result == gr.skip():
            result = [gr.skip()] * len(outputs)
        for block, value in zip(outputs, result):
            if isinstance(value, Block):  # a component returned for its properties, as gr.update
                value = {**value.constructor_args, "__type__": "update"}
            if isinstance(value, dict) and value.get("__type__") == "update":  # a skip, or new properties
                if "value" in value:
                    self.values[block._id] = value["value"]
            else:
                self.values[block._id] = value
        return [block for block in outputs if block._id in before and self.value(block) != before[block._id]]


def as_sent(outputs: list[Block], result: Any) -> Any:
    """A handler's result as Gradio sends it to several outputs: one value per output, in order
    ({component: value} spread over them, a gr.skip() for each one left out or for a lone gr.skip())."""
    if isinstance(result, dict) and result and all(isinstance(key, Block) for key in result):
        return convert_component_dict_to_list(outputs, result)
    if len(outputs) > 1 and isinstance(result, dict) and result == gr.skip():
        return [gr.skip()] * len(outputs)
    return result


def handler(demo: gr.Blocks, name: str, module=None, nth: int = 0) -> Callable:
    """The `nth` event handler whose function is called `name` (in the module `module`, when given),
    returning what Gradio sends (`as_sent`): a tab's handlers by their own names, not by the api
    names Gradio numbers in build order."""
    block_fn = [block_fn for block_fn in demo.fns.values() if block_fn.fn is not None and block_fn.fn.__name__ == name
                and (module is None or block_fn.fn.__module__ == module.__name__)][nth]
    return lambda *args: as_sent(block_fn.outputs, block_fn.fn(*args))


def drawn(refresh, *args) -> list:
    """What a tab's `Refresh` sends to its outputs for these arguments, one value per output."""
    result = refresh.fn(*args)
    assert not isinstance(result, dict) or set(map(id, result)) <= set(map(id, refresh.outputs)), "not an output"
    return as_sent(refresh.outputs, result)


# --- the vitviz shell ------------------------------------------------------------------------------

def tab_bar(demo: gr.Blocks) -> gr.Tabs:
    return next(block for block in demo.blocks.values() if isinstance(block, gr.Tabs))


def upload_photo(session: Session, path: str) -> None:
    """Drop the file at `path` on the shell's upload box: the photo is read, analysed, and the tabs redraw."""
    use_upload = next(f for f in session.demo.fns.values() if f.api_name == "use_upload")
    upload = session.demo.blocks[use_upload.targets[0][0]]
    session.set(upload, path)
    session.trigger(upload, "upload")
