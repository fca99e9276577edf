--- :checkhealth wick

local M = {}

function M.check()
  local health = vim.health
  local wick = require('wick')
  health.start('wick')

  if vim.fn.has('nvim-0.11') == 1 then
    health.ok('Neovim ' .. tostring(vim.version()))
  else
    health.error('Neovim 0.11 or newer is needed (vim.lsp.completion, vim.lsp.start reuse)')
  end

  if not wick.state.did_setup then
    health.warn("setup was not called", { "add require('wick').setup({}) to your config" })
  end

  local binary, tried = wick.find_binary()
  if binary then
    local res = vim.system({ binary, '--version' }, { text = true }):wait(5000)
    if res.code == 0 then
      health.ok(('server: %s (%s)'):format(binary, vim.trim(res.stdout or '')))
    else
      health.error(('server: %s does not run (exit %s): %s'):format(binary, tostring(res.code), vim.trim(res.stderr or '')))
    end
  else
    health.error(('server binary not found (looked at %s)'):format(table.concat(tried, ', ')), {
      'build it with `cargo build --release` or install it with `cargo install --path .`',
      "or set server_path in require('wick').setup({ server_path = ... })",
    })
  end

  -- What the server itself finds (`wick doctor`): CPU, kernels, the model
  -- it would load, caches, device; the editor check only when the plugin
  -- runs `wick` from PATH.
  if binary then
    local args = { binary, 'doctor' }
    local model = wick.config and wick.config.settings and wick.config.settings.model
    if type(model) == 'string' and model ~= '' then
      vim.list_extend(args, { '--model', model })
    end
    if not (wick.config and wick.config.server_path) then
      vim.list_extend(args, { '--editor', 'nvim' })
    end
    local res = vim.system(args, { text = true }):wait(10000)
    if res.code ~= 0 then
      health.warn(('`wick doctor` failed (exit %s): %s'):format(tostring(res.code), vim.trim(res.stderr or '')))
    else
      for line in (res.stdout or ''):gmatch('[^\n]+') do
        local mark, rest = line:sub(1, 2), vim.trim(line:sub(4))
        if mark == '!!' then
          health.warn('doctor: ' .. rest)
        elseif mark == 'ok' then
          health.ok('doctor: ' .. rest)
        else
          health.info('doctor: ' .. line)
        end
      end
    end
  end

  local clients = vim.lsp.get_clients({ name = 'wick' })
  if #clients == 0 then
    health.warn('no wick server is running', { 'open a file of a configured filetype, or run :WickRestart' })
  else
    for _, c in ipairs(clients) do
      local caps = c.server_capabilities or {}
      health.ok(('server running (client %d, root %s, %d buffer(s))'):format(c.id, c.root_dir or '-', vim.tbl_count(c.attached_buffers)))
      if caps.inlineCompletionProvider then
        health.ok('the server offers inline completions (ghost text)')
      else
        health.warn('the server does not offer textDocument/inlineCompletion')
      end
    end
  end

  local st = wick.state.status
  if st.state == 'ready' then
    health.ok(('model %s ready'):format(st.model))
  elseif st.state == 'loading' then
    health.info(('model %s loading'):format(st.model))
  elseif st.state == 'error' then
    health.error(('the model did not load: %s'):format(st.message), { 'run models/fetch in the wick repository, or set settings.model' })
  elseif st.state == 'exited' then
    health.error(('the server exited: %s'):format(st.message))
  else
    health.info('model state: ' .. (st.state ~= '' and st.state or 'unknown'))
  end
  if wick.state.latency_ms then
    health.info(('last inline completion: %d ms'):format(wick.state.latency_ms))
  end
  health.info(('suggestions %s'):format(wick.state.enabled and 'on' or 'off'))
end

return M
