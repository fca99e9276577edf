;;; wick.el --- wick as eglot's server for Python  -*- lexical-binding: t; -*-

;; The configuration scripts/e2e-emacs tests: Emacs 28 with eglot 1.9
;; (Debian: emacs-nox elpa-eglot), or the eglot built into Emacs 29+.
;; From your init file:  (load "/path/to/wick/editors/emacs/wick.el")
;; with `wick' on PATH.  Completion: M-x completion-at-point (C-M-i);
;; fixes for syntax errors: M-x eglot-code-actions.  Eglot runs one server
;; per buffer, so wick replaces the mode's other server.

(require 'eglot)

(add-to-list 'eglot-server-programs
             '((python-mode python-ts-mode)
               . ("wick" "serve" :initializationOptions (:maxTokens 64))))
(add-hook 'python-mode-hook #'eglot-ensure)
(add-hook 'python-ts-mode-hook #'eglot-ensure)

(defvar wick-status nil
  "The model's state from wick's last `wick/status': loading, ready or error.")

(cl-defmethod eglot-handle-notification
  (_server (_method (eql 'wick/status)) &key state message &allow-other-keys)
  "Keep the model's state in `wick-status'; say when it fails to load."
  (setq wick-status state)
  (when (equal state "error")
    (message "wick: %s" message)))

(provide 'wick)
;;; wick.el ends here
