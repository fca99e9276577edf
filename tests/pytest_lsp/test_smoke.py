"""Smoke test with an independent LSP client (pytest-lsp, on pygls/lsprotocol).

Runs the real `wick serve` binary with the real default model: initialize,
open a Python file, ask for an inline completion and a completion, shut down.
"""

import os
import sys
import pathlib

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

ROOT = pathlib.Path(__file__).resolve().parents[2]
WICK = os.environ.get("WICK_BIN", str(ROOT / "target" / "release" / "wick"))

SOURCE = (
    "def is_even(n: int) -> bool:\n"
    '    """Return True when n is even."""\n'
    "    \n"
    "\n"
    "print(is_even(4))\n"
)


@pytest_lsp.fixture(config=ClientServerConfig(server_command=[WICK, "serve", "--stdio"]))
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(
                window=types.WindowClientCapabilities(work_done_progress=True)
            ),
            initialization_options={"maxTokens": 32},
        )
    )
    yield
    await lsp_client.shutdown_session()


async def wait_for_model(client: LanguageClient):
    # The server reports loading through $/progress; wait for its end.
    for _ in range(600):
        for token, events in client.progress_reports.items():
            if any(isinstance(e, types.WorkDoneProgressEnd) for e in events):
                return
        await __import__("asyncio").sleep(0.1)
    raise AssertionError("model did not finish loading")


@pytest.mark.asyncio
async def test_completion_and_inline_completion(client: LanguageClient):
    await wait_for_model(client)
    uri = "file:///smoke/even.py"
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=SOURCE)
        )
    )
    pos = types.Position(line=2, character=4)
    result = await client.protocol.send_request_async(
        "textDocument/inlineCompletion",
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=pos,
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
        ),
    )
    items = result if isinstance(result, list) else getattr(result, "items", result)
    assert items, "no inline completion"
    text = items[0].insert_text if hasattr(items[0], "insert_text") else items[0]["insertText"]
    assert "return" in text, text

    completion = await client.text_document_completion_async(
        types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=uri), position=pos)
    )
    assert completion is not None
    items = completion.items if hasattr(completion, "items") else completion
    assert len(items) == 1
    assert items[0].text_edit is not None
