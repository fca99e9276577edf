--- wick for Neovim 0.11+: starts `wick serve` with vim.lsp.start, turns on
--- vim.lsp.completion, and shows `textDocument/inlineCompletion` answers as
--- ghost text (extmarks) while you type, with keys to accept and dismiss.
---
---   require('wick').setup({ settings = { maxTokens = 64 } })
---
--- One server per Neovim (the model is loaded once), attached to every file
--- buffer of the configured filetypes. `:checkhealth wick` checks the set-up.

local M = {}

---@class wick.Config
local defaults = {
  --- Path of the wick binary; nil: `wick` on PATH, then target/release/wick
  --- under the current directory.
  server_path = nil,
  --- Extra arguments after `serve`, e.g. { '--log-file', '/tmp/wick.log' }.
  server_args = {},
  --- Filetypes to attach to; nil: every file buffer.
  filetypes = nil,
  root_markers = { '.git' },
  --- Server settings, as in the README's settings table (maxTokens, model, ...).
  settings = {},
  --- vim.lsp.completion: completion items in the popup menu (<C-x><C-o>, or
  --- automatic on the server's trigger characters with autotrigger).
  completion = { enable = true, autotrigger = false },
  --- Ghost text: requested this long after the last keystroke in insert mode.
  inline = { enable = true, debounce_ms = 150 },
  --- Insert-mode keys; false turns one off. Without a suggestion, the key
  --- does what it did before (next/prev ask for suggestions instead).
  --- next/prev cycle through the server's suggestions (up to its
  --- `suggestions` setting), asked for when pressed.
  keymaps = { accept = '<Tab>', accept_line = '<C-l>', dismiss = '<C-]>', next = '<M-]>', prev = '<M-[>' },
  --- Restart after a crash: delays double from base_ms up to max_ms; after
  --- max_attempts quick crashes in a row, stop and say so.
  restart = { base_ms = 1000, max_ms = 30000, max_attempts = 6, reset_after_ms = 60000 },
}

---@type wick.Config
M.config = vim.deepcopy(defaults)

--- What the plugin knows, for `:checkhealth wick` and statuslines.
M.state = {
  did_setup = false,
  enabled = true,
  binary = nil, ---@type string?
  tried = {}, ---@type string[]
  --- From the server's `wick/status` notification: loading, ready or error;
  --- `stopped` before a server runs, `exited` after it died.
  status = { state = 'stopped', model = '', message = '' },
  --- Milliseconds from request to answer of the last non-empty inline completion.
  latency_ms = nil, ---@type number?
  crashes = 0,
  started_at = 0,
  restart_pending = false,
}

local ns = vim.api.nvim_create_namespace('wick.ghost')
M.namespace = ns
local group = vim.api.nvim_create_augroup('wick', { clear = true })
local uv = vim.uv or vim.loop

--- Per buffer: the pending request, the debounce timer and the shown suggestion.
---@type table<integer, {timer: uv.uv_timer_t?, request: {client: vim.lsp.Client, id: integer}?, ghost: table?}>
local buffers = {}
--- Clients we stop ourselves, so their exit is not a crash.
local stopped_by_us = {} ---@type table<integer, boolean>

local function notify(msg, level)
  vim.notify('wick: ' .. msg, level or vim.log.levels.INFO)
end

local function is_executable(path)
  return path ~= nil and path ~= '' and vim.fn.executable(path) == 1
end

--- The binary: the configured path (no fallback), `wick` on PATH, then
--- target/release/wick under the current directory.
---@return string? path, string[] tried
function M.find_binary(config)
  config = config or M.config
  if config.server_path and config.server_path ~= '' then
    local p = vim.fs.normalize(config.server_path)
    return is_executable(p) and p or nil, { p }
  end
  local tried = {}
  local on_path = vim.fn.exepath('wick')
  if on_path ~= '' then
    return on_path, { on_path }
  end
  table.insert(tried, 'wick on PATH')
  local local_build = vim.fs.joinpath(vim.fn.getcwd(), 'target', 'release', 'wick')
  table.insert(tried, local_build)
  if is_executable(local_build) then
    return local_build, tried
  end
  return nil, tried
end

local function get_client(buf)
  return vim.lsp.get_clients({ bufnr = buf, name = 'wick' })[1]
end

------------------------------------------------------------------------------
-- Ghost text

local function buf_state(buf)
  buffers[buf] = buffers[buf] or {}
  return buffers[buf]
end

local function cancel(buf)
  local s = buffers[buf]
  if not s then
    return
  end
  if s.timer then
    s.timer:stop()
  end
  if s.request then
    pcall(function()
      s.request.client:cancel_request(s.request.id)
    end)
    s.request = nil
  end
end

--- Removes the ghost text of a buffer.
function M.dismiss(buf)
  buf = buf or vim.api.nvim_get_current_buf()
  if vim.api.nvim_buf_is_valid(buf) then
    vim.api.nvim_buf_clear_namespace(buf, ns, 0, -1)
  end
  if buffers[buf] then
    buffers[buf].ghost = nil
  end
end

--- The suggestion shown in a buffer, if any: { row, col, text, ... }.
function M.visible(buf)
  local s = buffers[buf or vim.api.nvim_get_current_buf()]
  return s and s.ghost or nil
end

local function byte_col(buf, pos, encoding)
  local line = vim.api.nvim_buf_get_lines(buf, pos.line, pos.line + 1, false)[1] or ''
  local ok, col = pcall(vim.str_byteindex, line, encoding, pos.character, false)
  return ok and col or #line
end

--- Shows `item` as ghost text at (row, col). `list`: the answer's items,
--- which of them this is, and whether they were asked for (cycling).
local function show(buf, item, encoding, row, col, list)
  local text = type(item.insertText) == 'table' and item.insertText.value or item.insertText
  if type(text) ~= 'string' or text == '' then
    return
  end
  -- The item replaces its range; what is already typed in it is not ghost.
  local start_row, start_col, end_row, end_col = row, col, row, col
  if item.range then
    start_row, end_row = item.range.start.line, item.range['end'].line
    start_col = byte_col(buf, item.range.start, encoding)
    end_col = byte_col(buf, item.range['end'], encoding)
  end
  if start_row ~= row or start_col > col then
    return
  end
  local line = vim.api.nvim_buf_get_lines(buf, row, row + 1, false)[1] or ''
  local typed = line:sub(start_col + 1, col)
  if text:sub(1, #typed) ~= typed then
    return
  end
  local ghost = text:sub(#typed + 1)
  if ghost == '' then
    return
  end
  local lines = vim.split(ghost, '\n', { plain = true })
  local tab = string.rep(' ', vim.bo[buf].tabstop)
  local function chunk(l)
    return { { (l:gsub('\t', tab)), 'WickGhostText' } }
  end
  local virt_lines = {}
  for i = 2, #lines do
    table.insert(virt_lines, chunk(lines[i]))
  end
  M.dismiss(buf)
  vim.api.nvim_buf_set_extmark(buf, ns, row, col, {
    virt_text = lines[1] ~= '' and chunk(lines[1]) or nil,
    virt_text_pos = 'inline',
    virt_lines = #virt_lines > 0 and virt_lines or nil,
    hl_mode = 'combine',
    right_gravity = false,
  })
  buf_state(buf).ghost = {
    row = row,
    col = col,
    text = ghost,
    item_text = text,
    -- The server's id for its statistics (the item's command argument).
    stats_id = vim.tbl_get(item, 'command', 'arguments', 1, 'id'),
    candidate = vim.tbl_get(item, 'command', 'arguments', 1, 'candidate'),
    items = list and list.items or { item },
    index = list and list.index or 1,
    invoked = list and list.invoked or false,
    encoding = encoding,
    range = { start_row = start_row, start_col = start_col, end_row = end_row, end_col = end_col },
    tick = vim.api.nvim_buf_get_changedtick(buf),
  }
end

--- Asks the server for an inline completion at the cursor (insert mode).
--- `opts.invoked`: asked for by the user (the server answers with several
--- to cycle through); `opts.delta`: show the one that many after the first.
function M.request(buf, opts)
  opts = opts or {}
  buf = buf or vim.api.nvim_get_current_buf()
  local client = get_client(buf)
  if not (M.state.enabled and client and vim.api.nvim_get_current_buf() == buf) then
    return
  end
  if not vim.api.nvim_get_mode().mode:match('^i') then
    return
  end
  cancel(buf)
  local win = vim.api.nvim_get_current_win()
  local cursor = vim.api.nvim_win_get_cursor(win)
  local tick = vim.api.nvim_buf_get_changedtick(buf)
  local params = vim.lsp.util.make_position_params(win, client.offset_encoding)
  params.context = { triggerKind = opts.invoked and 1 or 2 } -- Invoked or Automatic
  local t0 = uv.hrtime()
  local s = buf_state(buf)
  local ok, id
  ok, id = client:request('textDocument/inlineCompletion', params, function(err, result)
    if s.request and s.request.id == id then
      s.request = nil
    end
    if err or not result then
      return
    end
    local items = result.items or result
    local index = #items > 0 and (opts.delta or 0) % #items + 1 or 1
    local item = items[index]
    if not item or not vim.api.nvim_buf_is_valid(buf) then
      return
    end
    -- Only if nothing moved while the model was thinking.
    local now = vim.api.nvim_win_is_valid(win) and vim.api.nvim_win_get_cursor(win) or {}
    if vim.api.nvim_buf_get_changedtick(buf) ~= tick or now[1] ~= cursor[1] or now[2] ~= cursor[2] then
      return
    end
    if vim.api.nvim_get_current_buf() ~= buf or not vim.api.nvim_get_mode().mode:match('^i') then
      return
    end
    M.state.latency_ms = (uv.hrtime() - t0) / 1e6
    show(buf, item, client.offset_encoding, cursor[1] - 1, cursor[2], { items = items, index = index, invoked = opts.invoked })
  end, buf)
  if ok and id then
    s.request = { client = client, id = id }
  end
end

--- Shows the next (`delta` 1) or previous (-1) suggestion. The first time
--- at a position it asks the server for several (an invoked request); then
--- it cycles through them. Without a suggestion showing, it asks for one.
function M.cycle(buf, delta)
  buf = buf or vim.api.nvim_get_current_buf()
  local g = M.visible(buf)
  if g and g.tick == vim.api.nvim_buf_get_changedtick(buf) and g.invoked then
    if #g.items > 1 then
      local index = (g.index - 1 + delta) % #g.items + 1
      show(buf, g.items[index], g.encoding, g.row, g.col, { items = g.items, index = index, invoked = true })
    end
    return true
  end
  M.request(buf, { invoked = true, delta = g and delta or 0 })
  return true
end

--- Runs `fn` once `ms` after the last call for this buffer and `key`
--- (the buffer's timer of that name, made on first use).
local function debounce(buf, key, ms, fn)
  local s = buf_state(buf)
  if not s[key] then
    s[key] = uv.new_timer()
  end
  s[key]:stop()
  s[key]:start(ms, 0, vim.schedule_wrap(fn))
end

local function schedule_request(buf)
  debounce(buf, 'timer', M.config.inline.debounce_ms, function()
    M.request(buf)
  end)
end

--- Inserts the shown suggestion (all of it, or its first line) and puts the
--- cursor after it. Returns false when there is none.
function M.accept(buf, opts)
  buf = buf or vim.api.nvim_get_current_buf()
  local g = M.visible(buf)
  if not g or g.tick ~= vim.api.nvim_buf_get_changedtick(buf) then
    M.dismiss(buf)
    return false
  end
  local text = g.item_text
  local r = g.range
  if opts and opts.line then
    -- Up to the end of the ghost text's first line (the rest comes back as
    -- ghost text with the next request).
    local first = g.text:match('^[^\n]*')
    if first == '' then
      first = g.text:match('^\n[^\n]*') or g.text
    end
    text = text:sub(1, #text - #g.text) .. first
    r = { start_row = r.start_row, start_col = r.start_col, end_row = r.start_row, end_col = g.col }
  end
  M.dismiss(buf)
  cancel(buf)
  if g.stats_id then
    -- Before the edit, so the server has it before the next suggestion.
    local client = get_client(buf)
    if client then
      local params = { id = g.stats_id, candidate = g.candidate }
      if opts and opts.line then
        params.chars = vim.fn.strchars(text)
      end
      client:notify('wick/didAccept', params)
    end
  end
  local lines = vim.split(text, '\n', { plain = true })
  vim.api.nvim_buf_set_text(buf, r.start_row, r.start_col, r.end_row, r.end_col, lines)
  local row = r.start_row + #lines - 1
  local col = #lines == 1 and r.start_col + #lines[1] or #lines[#lines]
  local win = vim.fn.bufwinid(buf)
  if win ~= -1 then
    vim.api.nvim_win_set_cursor(win, { row + 1, col })
  end
  return true
end

local function feed(key)
  vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes(key, true, false, true), 'n', false)
end

local function map_keys(buf)
  local keys = M.config.keymaps
  local function map(lhs, desc, fn)
    if lhs then
      vim.keymap.set('i', lhs, function()
        if not fn() then
          feed(lhs)
        end
      end, { buffer = buf, desc = desc })
    end
  end
  map(keys.accept, 'wick: accept the suggestion', function()
    return M.accept(buf)
  end)
  map(keys.accept_line, 'wick: accept the first line of the suggestion', function()
    return M.accept(buf, { line = true })
  end)
  map(keys.next, 'wick: the next suggestion', function()
    return M.cycle(buf, 1)
  end)
  map(keys.prev, 'wick: the previous suggestion', function()
    return M.cycle(buf, -1)
  end)
  map(keys.dismiss, 'wick: dismiss the suggestion', function()
    if M.visible(buf) then
      M.dismiss(buf)
      cancel(buf)
      return true
    end
    return false
  end)
end

--- Tells the server where the cursor settled (`wick/didMoveCursor`), so it
--- can prefill the prompt there before the first keystroke.
local function report_cursor(buf)
  debounce(buf, 'cursor_timer', 200, function()
    local client = get_client(buf)
    if not client or vim.api.nvim_get_current_buf() ~= buf then
      return
    end
    local params = vim.lsp.util.make_position_params(vim.api.nvim_get_current_win(), client.offset_encoding)
    client:notify('wick/didMoveCursor', params)
  end)
end

local function attach_inline(buf)
  local bgroup = vim.api.nvim_create_augroup('wick.buf.' .. buf, { clear = true })
  vim.api.nvim_create_autocmd({ 'BufEnter', 'CursorMoved', 'InsertEnter' }, {
    group = bgroup,
    buffer = buf,
    callback = function()
      report_cursor(buf)
    end,
  })
  vim.api.nvim_create_autocmd('TextChangedI', {
    group = bgroup,
    buffer = buf,
    callback = function()
      M.dismiss(buf)
      schedule_request(buf)
    end,
  })
  -- While the popup menu is open, or a completion request runs, no ghost
  -- text: the server answers only the newest request of a document, so an
  -- inline request would leave the completion menu empty.
  vim.api.nvim_create_autocmd('TextChangedP', {
    group = bgroup,
    buffer = buf,
    callback = function()
      M.dismiss(buf)
      cancel(buf)
    end,
  })
  vim.api.nvim_create_autocmd('LspRequest', {
    group = bgroup,
    buffer = buf,
    callback = function(ev)
      local r = ev.data and ev.data.request
      if r and r.type == 'pending' and r.method == 'textDocument/completion' then
        local c = vim.lsp.get_client_by_id(ev.data.client_id)
        if c and c.name == 'wick' then
          M.dismiss(buf)
          cancel(buf)
        end
      end
    end,
  })
  vim.api.nvim_create_autocmd('CursorMovedI', {
    group = bgroup,
    buffer = buf,
    callback = function()
      local g = M.visible(buf)
      local c = vim.api.nvim_win_get_cursor(0)
      if g and (g.row ~= c[1] - 1 or g.col ~= c[2]) then
        M.dismiss(buf)
        cancel(buf)
      end
    end,
  })
  vim.api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
    group = bgroup,
    buffer = buf,
    callback = function()
      M.dismiss(buf)
      cancel(buf)
    end,
  })
  vim.api.nvim_create_autocmd({ 'BufWipeout', 'LspDetach' }, {
    group = bgroup,
    buffer = buf,
    callback = function(ev)
      if ev.event == 'LspDetach' and (not ev.data or vim.lsp.get_client_by_id(ev.data.client_id).name ~= 'wick') then
        return
      end
      M.dismiss(buf)
      cancel(buf)
      local s = buffers[buf]
      if s and s.timer then
        s.timer:close()
      end
      if s and s.cursor_timer then
        s.cursor_timer:close()
      end
      buffers[buf] = nil
      pcall(vim.api.nvim_del_augroup_by_id, bgroup)
    end,
  })
  map_keys(buf)
end

------------------------------------------------------------------------------
-- The server

local function on_status(_, params)
  params = params or {}
  local old = M.state.status.state
  M.state.status = { state = params.state or '', model = params.model or '', message = params.message or '' }
  if params.state == 'loading' and old ~= 'loading' then
    notify(('loading %s; suggestions start when it is ready'):format(params.model or 'the model'))
  elseif params.state == 'ready' and old ~= 'ready' then
    notify(('%s ready'):format(params.model or 'model'))
  end
  -- `error` comes with the server's own window/showMessage, which Neovim
  -- already shows; keep it for :checkhealth and the statusline.
  vim.api.nvim_exec_autocmds('User', { pattern = 'WickStatus', modeline = false, data = M.state.status })
end

local attach

local function restart_after_crash()
  local cfg = M.config.restart
  if uv.now() - M.state.started_at >= cfg.reset_after_ms then
    M.state.crashes = 0
  end
  M.state.crashes = M.state.crashes + 1
  if M.state.crashes > cfg.max_attempts then
    notify('the server keeps crashing, so it is not restarted again; :WickRestart tries again', vim.log.levels.ERROR)
    return
  end
  local delay = math.min(cfg.max_ms, cfg.base_ms * 2 ^ (M.state.crashes - 1))
  notify(('the server stopped unexpectedly; restarting in %d s'):format(math.ceil(delay / 1000)), vim.log.levels.WARN)
  M.state.restart_pending = true
  vim.defer_fn(function()
    M.state.restart_pending = false
    M.start_all()
  end, delay)
end

local function on_exit(code, signal, client_id)
  vim.schedule(function()
    local stopping = stopped_by_us[client_id]
    stopped_by_us[client_id] = nil
    local clean = code == 0 and signal == 0
    M.state.status = {
      state = (stopping or clean) and 'stopped' or 'exited',
      model = '',
      message = (stopping or clean) and '' or ('exit code %d, signal %d'):format(code, signal),
    }
    for buf in pairs(buffers) do
      M.dismiss(buf)
    end
    if stopping or clean or M.state.restart_pending then
      return
    end
    restart_after_crash()
  end)
end

--- A settings table as a JSON object even when empty (Lua's {} encodes as []).
local function object(t)
  return next(t or {}) and t or vim.empty_dict()
end

local function client_config(root)
  local cmd = { M.state.binary, 'serve' }
  vim.list_extend(cmd, M.config.server_args or {})
  return {
    name = 'wick',
    cmd = cmd,
    root_dir = root,
    -- Settings go as initializationOptions only: with `settings` set, Neovim
    -- also sends them in a didChangeConfiguration right after start.
    init_options = object(M.config.settings),
    handlers = { ['wick/status'] = on_status },
    on_exit = on_exit,
    on_init = function()
      M.state.started_at = uv.now()
    end,
    on_attach = function(client, buf)
      if M.config.completion.enable and vim.lsp.completion then
        vim.lsp.completion.enable(true, client.id, buf, { autotrigger = M.config.completion.autotrigger })
      end
      if M.config.inline.enable then
        attach_inline(buf)
      end
    end,
  }
end

local function wanted(buf)
  if not vim.api.nvim_buf_is_valid(buf) or vim.bo[buf].buftype ~= '' then
    return false
  end
  local ft = vim.bo[buf].filetype
  if M.config.filetypes then
    return vim.tbl_contains(M.config.filetypes, ft)
  end
  return ft ~= '' or vim.api.nvim_buf_get_name(buf) ~= ''
end

attach = function(buf)
  if not M.state.binary or not wanted(buf) then
    return
  end
  local root = vim.fs.root(buf, M.config.root_markers) or vim.fn.getcwd()
  vim.lsp.start(client_config(root), {
    bufnr = buf,
    -- One server (one loaded model) for every buffer.
    reuse_client = function(client, config)
      return client.name == config.name and not client:is_stopped()
    end,
  })
end

--- Attaches every loaded file buffer (after setup or a restart).
function M.start_all()
  for _, buf in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(buf) then
      attach(buf)
    end
  end
end

--- Stops the server, waiting up to `timeout_ms` for it to exit.
function M.stop(timeout_ms)
  local clients = vim.lsp.get_clients({ name = 'wick' })
  if #clients == 0 then
    return
  end
  for _, c in ipairs(clients) do
    stopped_by_us[c.id] = true
    c:stop()
  end
  vim.wait(timeout_ms or 3000, function()
    return #vim.lsp.get_clients({ name = 'wick' }) == 0
  end, 20)
  for _, c in ipairs(vim.lsp.get_clients({ name = 'wick' })) do
    c:stop(true)
  end
end

function M.restart()
  M.stop()
  M.state.crashes = 0
  M.state.binary, M.state.tried = M.find_binary()
  if not M.state.binary then
    notify(('server binary not found (looked at %s)'):format(table.concat(M.state.tried, ', ')), vim.log.levels.ERROR)
    return
  end
  M.start_all()
end

--- Turns ghost text and completion items on or off (the server keeps running).
function M.toggle(on)
  if on == nil then
    on = not M.state.enabled
  end
  M.state.enabled = on
  for buf in pairs(buffers) do
    M.dismiss(buf)
    cancel(buf)
  end
  if M.config.completion.enable and vim.lsp.completion then
    for _, c in ipairs(vim.lsp.get_clients({ name = 'wick' })) do
      for buf in pairs(c.attached_buffers) do
        vim.lsp.completion.enable(on, c.id, buf, { autotrigger = M.config.completion.autotrigger })
      end
    end
  end
  notify(on and 'suggestions on' or 'suggestions off')
end

--- A short state for a statusline: "wick", "wick 120ms", "wick: loading", ...
function M.statusline()
  local st = M.state.status.state
  if not M.state.binary then
    return M.state.did_setup and 'wick: not found' or ''
  elseif st == 'ready' then
    if not M.state.enabled then
      return 'wick: off'
    end
    return M.state.latency_ms and ('wick %dms'):format(M.state.latency_ms) or 'wick'
  end
  return 'wick: ' .. st
end

--- Sends changed server settings to the running server.
function M.update_settings(settings)
  M.config.settings = vim.tbl_deep_extend('force', M.config.settings, settings)
  for _, c in ipairs(vim.lsp.get_clients({ name = 'wick' })) do
    c:notify('workspace/didChangeConfiguration', { settings = { wick = object(M.config.settings) } })
  end
end

---@param opts wick.Config?
function M.setup(opts)
  M.config = vim.tbl_deep_extend('force', vim.deepcopy(defaults), opts or {})
  M.state.did_setup = true
  vim.api.nvim_set_hl(0, 'WickGhostText', { link = 'Comment', default = true })
  vim.api.nvim_clear_autocmds({ group = group })

  vim.api.nvim_create_user_command('WickRestart', M.restart, { desc = 'wick: restart the server' })
  vim.api.nvim_create_user_command('WickToggle', function()
    M.toggle()
  end, { desc = 'wick: turn suggestions on or off' })
  vim.api.nvim_create_user_command('WickStatus', function()
    vim.print(M.statusline(), M.state.status)
  end, { desc = 'wick: the server and model state' })

  M.state.binary, M.state.tried = M.find_binary()
  if not M.state.binary then
    -- The editor keeps working; :checkhealth wick and :WickRestart help later.
    notify(
      ('server binary not found (looked at %s); set server_path in setup{} or put wick on PATH'):format(
        table.concat(M.state.tried, ', ')
      ),
      vim.log.levels.ERROR
    )
    return false
  end
  vim.api.nvim_create_autocmd('FileType', {
    group = group,
    callback = function(ev)
      attach(ev.buf)
    end,
  })
  M.start_all()
  return true
end

return M
