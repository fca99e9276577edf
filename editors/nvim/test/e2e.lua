-- End-to-end test of the plugin in real Neovim with the real server and
-- model. Run by scripts/e2e-nvim: nvim --headless --clean -S this file, with
-- WICK_BIN, ART (artifacts folder) and PLUGIN_DIR set. `-S` keeps the main
-- loop running, so typed keys go through insert mode, autocommands and
-- mappings as they do for a user. The exit code is the verdict.
--
-- 1. a missing binary: an error through vim.notify, setup returns false; a
--    missing model: wick/status error, and the editor still edits;
-- 2. the model loads (wick/status ready);
-- 3. typing shows ghost text (an extmark with virt_text at the cursor),
--    <M-]>/<M-[> cycle through several suggestions, and <Tab> inserts the
--    one shown, and the server records it as accepted in its
--    statistics file (under XDG_DATA_HOME, which scripts/e2e-nvim sets);
-- 4. vim.lsp.completion lists wick's item, selecting it inserts it;
-- 5. a killed server is restarted, with a warning;
-- 6. :checkhealth wick reports no error;
-- 7. a missing ':' is published as a diagnostic; "Fix with wick" is listed
--    for it, resolved through codeAction/resolve, and its edit adds the ':'
--    and clears the diagnostic;
-- 8. vim.lsp.buf.code_action() lists "Complete this function with wick" in
--    a `pass` body.

local art = assert(os.getenv('ART'), 'ART is not set (run scripts/e2e-nvim)')
local wick_bin = assert(os.getenv('WICK_BIN'), 'WICK_BIN is not set')
vim.opt.rtp:prepend(assert(os.getenv('PLUGIN_DIR'), 'PLUGIN_DIR is not set'))
vim.cmd('filetype plugin indent on')
vim.o.showmode = false -- no "-- INSERT --" on stdout
vim.opt.shortmess:append('c') -- nor completion-menu messages

local uv = vim.uv
local t0 = uv.now()
local timings = {}
local logfile = assert(io.open(art .. '/e2e.log', 'w'))
local function say(msg)
  local line = ('   [%.1fs] %s'):format((uv.now() - t0) / 1000, msg)
  logfile:write(line, '\n')
  logfile:flush()
  io.stderr:write(line, '\n')
end

-- Every vim.notify, for the checks (the plugin reports through it).
local notes = {}
vim.notify = function(msg, level)
  table.insert(notes, { msg = msg, level = level or vim.log.levels.INFO })
  say(('notify[%s]: %s'):format(level or vim.log.levels.INFO, msg))
end
local function noted(pattern, level)
  for _, n in ipairs(notes) do
    if n.msg:find(pattern) and (not level or n.level == level) then
      return true
    end
  end
  return false
end

local function finish(ok, why)
  timings.total_ms = uv.now() - t0
  local f = assert(io.open(art .. '/timings.json', 'w'))
  f:write(vim.json.encode(timings))
  f:close()
  say(('timings: %s'):format(vim.json.encode(timings)))
  say(ok and 'passed' or ('FAILED: ' .. tostring(why)))
  logfile:close()
  pcall(function()
    require('wick').stop(2000)
  end)
  vim.cmd(ok and 'qall!' or 'cquit 1')
end

local function sleep(ms)
  local co = coroutine.running()
  vim.defer_fn(function()
    local ok, err = coroutine.resume(co)
    if not ok then
      finish(false, debug.traceback(co, err))
    end
  end, ms)
  coroutine.yield()
end

local function wait_for(what, timeout_ms, cond)
  local start = uv.now()
  while not cond() do
    if uv.now() - start > timeout_ms then
      error(('timed out after %d ms waiting for %s'):format(timeout_ms, what), 2)
    end
    sleep(50)
  end
  return uv.now() - start
end

local function check(ok, what)
  if not ok then
    error('check failed: ' .. what, 2)
  end
end

local function keys(s, remap)
  vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes(s, true, false, true), remap and 'm' or 'n', false)
end

local function type_slowly(s)
  for c in s:gmatch('.') do
    keys(c)
    sleep(40)
  end
end

local function line(n)
  return vim.api.nvim_buf_get_lines(0, n - 1, n, false)[1]
end

local function get_client(buf)
  return vim.lsp.get_clients({ bufnr = buf, name = 'wick' })[1]
end

local function wick_diagnostics(buf, client)
  return vim.diagnostic.get(buf, { namespace = vim.lsp.diagnostic.get_namespace(client.id, false) })
end

local function titles(actions)
  return vim.inspect(vim.tbl_map(function(a)
    return a.title
  end, actions))
end

--- A request from inside the test's coroutine: waits for the answer.
local function request(client, method, params, buf, timeout_ms)
  local answer
  client:request(method, params, function(err, result)
    answer = { err = err, result = result }
  end, buf)
  wait_for('the answer to ' .. method, timeout_ms, function()
    return answer ~= nil
  end)
  check(answer.err == nil, ('%s failed: %s'):format(method, vim.inspect(answer.err)))
  return answer.result
end

local tmp = vim.fn.tempname()
vim.fn.mkdir(tmp, 'p')
local pids = tmp .. '/server.pids'
local wrapper = tmp .. '/wick-server'
vim.fn.writefile({ '#!/bin/sh', ("echo $$ >> '%s'"):format(pids), ("exec '%s' \"$@\""):format(wick_bin) }, wrapper)
vim.fn.setfperm(wrapper, 'rwxr-xr-x')
local function read_pids()
  return vim.tbl_map(tonumber, vim.fn.readfile(pids))
end

local file = tmp .. '/primes.py'
vim.fn.writefile({
  'import math',
  '',
  '',
  'def is_prime(n):',
  '    """Return True if n is a prime number."""',
  '    if n < 2:',
  '        return False',
  '    for i in range(2, int(math.sqrt(n)) + 1):',
  '        if n % i == 0:',
  '            return False',
  '    return True',
  '',
  '',
  'def primes_below(limit):',
  '    """Return the list of primes below limit."""',
}, file)

local function main()
  local wick = require('wick')

  -- 1. A missing binary: a clear message, and the editor keeps working.
  check(wick.setup({ server_path = tmp .. '/no-such-wick' }) == false, 'setup with a missing binary returns false')
  check(noted('server binary not found', vim.log.levels.ERROR), 'vim.notify names the missing binary')
  check(wick.statusline() == 'wick: not found', 'statusline: ' .. wick.statusline())

  -- A model that does not load: the state says so; the editor keeps working.
  check(wick.setup({ server_path = wrapper, settings = { model = tmp .. '/missing.gguf' } }), 'setup with a missing model')
  vim.cmd.edit(vim.fn.fnameescape(tmp .. '/scratch.py'))
  wait_for('wick/status error', 10000, function()
    return wick.state.status.state == 'error'
  end)
  check(wick.statusline() == 'wick: error', 'statusline: ' .. wick.statusline())
  check(noted('missing.gguf'), "the server's message names the model file")
  keys('ihello<Esc>')
  sleep(100)
  check(line(1) == 'hello', 'editing works without a model: ' .. tostring(line(1)))
  say('missing model: ' .. wick.state.status.message)
  wick.stop()
  vim.cmd('bwipeout!')

  -- 2. The real server; the model loads.
  check(wick.setup({
    server_path = wrapper,
    server_args = { '--log-file', art .. '/wick-server.log' },
    inline = { debounce_ms = 50 },
  }), 'setup with the real binary')
  vim.cmd.edit(vim.fn.fnameescape(file))
  local buf = vim.api.nvim_get_current_buf()
  check(vim.bo[buf].filetype == 'python', 'filetype python')
  wait_for('the client to attach', 10000, function()
    return #vim.lsp.get_clients({ bufnr = buf, name = 'wick' }) == 1
  end)
  timings.ready_ms = wait_for('wick/status ready', 120000, function()
    return wick.state.status.state == 'ready'
  end)
  say('model ready: ' .. wick.state.status.model)
  check(noted('loading') and noted('ready'), 'loading and ready were reported')

  -- 3. Ghost text while typing, <Tab> accepts it.
  keys('Go')
  sleep(100)
  type_slowly('return [p for p in ')
  check(vim.api.nvim_get_mode().mode == 'i', 'in insert mode')
  local typed = line(16)
  local typed_at = uv.now()
  local mark
  wait_for('a ghost-text extmark', 120000, function()
    local marks = vim.api.nvim_buf_get_extmarks(buf, wick.namespace, 0, -1, { details = true })
    mark = marks[1]
    return mark ~= nil and (mark[4].virt_text ~= nil or mark[4].virt_lines ~= nil)
  end)
  timings.first_ghost_text_ms = uv.now() - typed_at
  local cursor = vim.api.nvim_win_get_cursor(0)
  check(mark[2] == cursor[1] - 1 and mark[3] == cursor[2], ('the extmark is at the cursor: %s vs %s'):format(vim.inspect({ mark[2], mark[3] }), vim.inspect(cursor)))
  local ghost = wick.visible(buf).text
  local virt = table.concat(vim.tbl_map(function(c)
    return c[1]
  end, mark[4].virt_text or {}))
  check(virt == ghost:match('^[^\n]*'), ('virt_text %q is the first line of %q'):format(virt, ghost))
  say(('ghost text after %d ms: %q'):format(timings.first_ghost_text_ms, ghost))
  -- <M-]> asks for several suggestions and shows the second, <M-[> goes
  -- back to the first, <M-]> again to the second; <Tab> accepts that one.
  local first = ghost
  local asked_at = uv.now()
  keys('<M-]>', true)
  wait_for('a second suggestion', 60000, function()
    local g = wick.visible(buf)
    return g ~= nil and g.invoked and g.index == 2
  end)
  timings.next_suggestion_ms = uv.now() - asked_at
  local g = wick.visible(buf)
  check(#g.items >= 2 and #g.items <= 3, ('%d suggestions to cycle through'):format(#g.items))
  check(g.text ~= first, ('the second suggestion %q differs from the first %q'):format(g.text, first))
  local second = g.text
  say(('<M-]> after %d ms: %d suggestions, the second %q'):format(timings.next_suggestion_ms, #g.items, second))
  keys('<M-[>', true)
  sleep(100)
  check(wick.visible(buf) and wick.visible(buf).index == 1 and wick.visible(buf).text == first, '<M-[> shows the first again')
  keys('<M-]>', true)
  sleep(100)
  check(wick.visible(buf) and wick.visible(buf).text == second, '<M-]> shows the second again, without asking')
  ghost = second
  keys('<Tab>', true)
  sleep(200)
  local accepted = line(16)
  local ghost_lines = vim.split(ghost, '\n', { plain = true })
  check(accepted == typed .. ghost_lines[1], ('after <Tab>: %q == %q .. %q'):format(accepted, typed, ghost_lines[1]))
  for i = 2, #ghost_lines do
    check(line(15 + i) == ghost_lines[i], ('line %d after <Tab>: %q'):format(15 + i, line(15 + i)))
  end
  check(vim.api.nvim_get_mode().mode == 'i', 'still in insert mode after <Tab>')
  check(vim.api.nvim_win_get_cursor(0)[1] == 15 + #ghost_lines, 'the cursor is after the inserted text')
  say(('accepted: %q'):format(accepted))
  local stats_file = assert(os.getenv('XDG_DATA_HOME'), 'XDG_DATA_HOME is not set') .. '/wick/stats.jsonl'
  wait_for('an accepted record in ' .. stats_file, 10000, function()
    local f = io.open(stats_file)
    local text = f and f:read('*a') or ''
    if f then
      f:close()
    end
    return text:find('"outcome":"accepted"', 1, true) ~= nil
  end)
  local f = assert(io.open(stats_file))
  local record = f:read('*a')
  f:close()
  check(record:find('"candidate":1', 1, true) ~= nil, 'the record says the second suggestion was taken: ' .. record)
  say('the statistics file records the accept')
  check(wick.statusline():match('^wick %d+ms$') ~= nil, 'statusline with latency: ' .. wick.statusline())

  -- 4. Completion items through vim.lsp.completion.
  keys('<Esc>Go')
  sleep(100)
  type_slowly('count = len(primes_b')
  keys('<Cmd>lua vim.lsp.completion.get()<CR>')
  asked_at = uv.now()
  wait_for('completion items', 60000, function()
    return #vim.fn.complete_info({ 'items' }).items > 0
  end)
  timings.completion_item_ms = uv.now() - asked_at
  local item = vim.fn.complete_info({ 'items' }).items[1]
  say(('completion item after %d ms: %q'):format(timings.completion_item_ms, item.word))
  check(item.word:find('^primes_b') ~= nil, 'the item continues the typed word: ' .. item.word)
  vim.api.nvim_select_popupmenu_item(0, true, true, {})
  sleep(200)
  local n = vim.api.nvim_buf_line_count(buf)
  check(line(n):find('count = len(' .. item.word, 1, true) ~= nil, ('the item was inserted: %q'):format(line(n)))
  keys('<Esc>')
  sleep(100)

  -- 5. A crash: the server comes back after a back-off.
  local before = read_pids()
  uv.kill(before[#before], 'sigkill')
  say('killed the server, pid ' .. before[#before])
  wait_for('a restart warning', 10000, function()
    return noted('restarting in', vim.log.levels.WARN)
  end)
  wait_for('a new server', 30000, function()
    return #read_pids() == #before + 1 and #vim.lsp.get_clients({ bufnr = buf, name = 'wick' }) == 1
  end)
  wait_for('the model ready again', 60000, function()
    return wick.state.status.state == 'ready'
  end)
  say('server restarted')

  -- 6. :checkhealth wick
  vim.cmd('checkhealth wick')
  local report = vim.api.nvim_buf_get_lines(0, 0, -1, false)
  vim.fn.writefile(report, art .. '/checkhealth.txt')
  local text = table.concat(report, '\n')
  check(text:find('OK') ~= nil, 'checkhealth has OK lines')
  check(text:find('ERROR') == nil, 'checkhealth has no ERROR:\n' .. text)
  check(text:find('model .* ready') ~= nil, 'checkhealth reports the model ready')
  check(text:find('doctor: .*int8 matmul kernels') ~= nil, "checkhealth shows wick doctor's findings:\n" .. text)
  say('checkhealth: ' .. #report .. ' lines, no error')

  -- 7. A syntax error: a diagnostic, and "Fix with wick" repairs it.
  local broken = {
    'def mean(values)',
    '    total = sum(values)',
    '    return total / len(values)',
  }
  vim.fn.writefile(broken, tmp .. '/stats.py')
  vim.cmd.edit(vim.fn.fnameescape(tmp .. '/stats.py'))
  buf = vim.api.nvim_get_current_buf()
  local opened_at = uv.now()
  wait_for('the client to attach to stats.py', 10000, function()
    return get_client(buf) ~= nil
  end)
  local client = get_client(buf)
  local diag
  local found, err = pcall(wait_for, "a wick diagnostic \"expected ':'\" on line 0", 20000, function()
    for _, d in ipairs(wick_diagnostics(buf, client)) do
      if d.source == 'wick' and d.message == "expected ':'" and d.lnum == 0 then
        diag = d
      end
    end
    return diag ~= nil
  end)
  check(found, ('%s; the diagnostics: %s'):format(err, vim.inspect(vim.diagnostic.get(buf))))
  timings.diagnostic_ms = uv.now() - opened_at
  local all = wick_diagnostics(buf, client)
  check(#all == 1, 'one diagnostic for one missing colon: ' .. vim.inspect(all))
  say(('diagnostic after %d ms: %q at %d:%d-%d:%d'):format(timings.diagnostic_ms, diag.message, diag.lnum, diag.col, diag.end_lnum, diag.end_col))

  -- As vim.lsp.buf.code_action() asks: the cursor's range, and the LSP
  -- diagnostics of its line (kept in user_data.lsp).
  vim.api.nvim_win_set_cursor(0, { 1, diag.col })
  local params = vim.lsp.util.make_range_params(0, client.offset_encoding)
  params.context = {
    triggerKind = vim.lsp.protocol.CodeActionTriggerKind.Invoked,
    diagnostics = vim.lsp.diagnostic.from(vim.diagnostic.get(buf, { namespace = vim.lsp.diagnostic.get_namespace(client.id, false), lnum = 0 })),
  }
  asked_at = uv.now()
  local actions = request(client, 'textDocument/codeAction', params, buf, 10000) or {}
  timings.code_action_list_ms = uv.now() - asked_at
  local fix, known
  for _, a in ipairs(actions) do
    if a.title == "Fix with wick: expected ':'" then
      fix = a
    elseif a.title == "Insert ':'" then
      known = a
    end
  end
  -- The repair the syntax search proved is listed too, with its edit.
  check(known ~= nil, "\"Insert ':'\" is listed: " .. titles(actions))
  check(known.isPreferred == true and known.edit ~= nil, 'the known repair is preferred and has its edit: ' .. vim.inspect(known))
  check(fix ~= nil, "\"Fix with wick: expected ':'\" is listed: " .. titles(actions))
  check(fix.kind == 'quickfix', 'the fix is a quickfix: ' .. tostring(fix.kind))
  check(fix.disabled == nil, 'the fix is enabled: ' .. vim.inspect(fix.disabled))
  say(('code actions after %d ms: %s'):format(timings.code_action_list_ms, titles(actions)))
  -- Neovim announces resolveSupport for edits, so the model runs only now.
  check(fix.edit == nil, 'listing computes no edit: ' .. vim.inspect(fix.edit))
  check(client:supports_method('codeAction/resolve'), 'the server resolves code actions')
  asked_at = uv.now()
  fix = request(client, 'codeAction/resolve', fix, buf, 60000)
  timings.fix_resolve_ms = uv.now() - asked_at
  say(('resolved after %d ms'):format(timings.fix_resolve_ms))
  check(fix and fix.edit ~= nil, 'the resolved fix has an edit: ' .. vim.inspect(fix))
  -- Neovim 0.11 does not announce workspaceEdit.documentChanges, so the edit
  -- is a plain (unversioned) `changes` map; it rewrites only the changed line.
  local edits = (fix.edit.changes or {})[vim.uri_from_bufnr(buf)] or {}
  check(#edits == 1 and edits[1].range.start.line == 0 and edits[1].range['end'].line <= 1, 'one edit of the first line: ' .. vim.inspect(fix.edit))
  vim.lsp.util.apply_workspace_edit(fix.edit, client.offset_encoding)
  local fixed = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
  local want = vim.deepcopy(broken)
  want[1] = 'def mean(values):'
  check(vim.deep_equal(fixed, want), ('the fix adds the colon and nothing else:\n%s'):format(table.concat(fixed, '\n')))
  local edited_at = uv.now()
  found, err = pcall(wait_for, 'the wick diagnostics to clear', 20000, function()
    return #wick_diagnostics(buf, client) == 0
  end)
  check(found, ('%s; left: %s'):format(err, vim.inspect(wick_diagnostics(buf, client))))
  timings.diagnostic_clear_ms = uv.now() - edited_at
  say(('fixed; diagnostics cleared after %d ms'):format(timings.diagnostic_clear_ms))

  -- 8. "Complete this function with wick" in a `pass` body, listed by
  -- vim.lsp.buf.code_action() itself (the diagnostics of the cursor's line,
  -- the client's range); vim.ui.select stands in for the menu.
  -- FIXME: choosing it is not tested: on 2 cores the fill takes 25-35 s (it
  -- asks for up to 384 tokens and cuts the body only afterwards), and above
  -- other code the body comes back indented twice (`        return ...`).
  vim.api.nvim_buf_set_lines(buf, -1, -1, false, { '', '', 'def add(a, b):', '    pass' })
  vim.api.nvim_win_set_cursor(0, { vim.api.nvim_buf_line_count(buf), 4 })
  local listed
  local select = vim.ui.select
  vim.ui.select = function(items, _, on_choice)
    listed = vim.tbl_map(function(i)
      return i.action
    end, items)
    on_choice(nil)
  end
  asked_at = uv.now()
  vim.lsp.buf.code_action()
  wait_for('the code action menu', 10000, function()
    return listed ~= nil or noted('No code actions available')
  end)
  vim.ui.select = select
  timings.complete_function_list_ms = uv.now() - asked_at
  listed = listed or {}
  local complete
  for _, a in ipairs(listed) do
    if a.title == 'Complete this function with wick: add' then
      complete = a
    end
  end
  check(complete ~= nil, '"Complete this function with wick: add" is listed: ' .. titles(listed))
  check(complete.kind == 'refactor.rewrite', 'its kind is refactor.rewrite: ' .. tostring(complete.kind))
  check(complete.edit == nil, 'listing computes no edit')
  say(('code actions in the body after %d ms: %s'):format(timings.complete_function_list_ms, titles(listed)))

  finish(true)
end

vim.defer_fn(function()
  finish(false, 'the whole test took more than 8 minutes')
end, 8 * 60 * 1000)

local co = coroutine.create(function()
  local ok, err = xpcall(main, debug.traceback)
  if not ok then
    finish(false, err)
  end
end)
vim.schedule(function()
  assert(coroutine.resume(co))
end)
