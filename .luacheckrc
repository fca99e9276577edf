-- luacheck (scripts/test): the Neovim plugin and its end-to-end test run in
-- Neovim's LuaJIT, where `vim` is the editor's API.
std = "luajit"
globals = { "vim" }
max_line_length = 170
