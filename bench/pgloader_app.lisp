;;; pgloader transform for the app's timestamps, loaded by migrate_bench.py with --load-lisp-file.
;;; pgloader's own SQLite rule (sqlite-timestamp-to-timestamp) reads an integer as a year ("1708434227"
;;; becomes "1708434227-01-01") and rejects every epoch timestamp; the app stores 10% of its tweet dates
;;; as Unix epoch seconds or milliseconds. Text is passed as written (PostgreSQL reads ISO 8601, SQLite's
;;; CURRENT_TIMESTAMP and Twitter's format itself).
(in-package #:pgloader.transforms)

(defun app-timestamp (value)
  "An integer is Unix epoch seconds, or milliseconds from 1e11 on (as the project's value rules say)."
  (if (integerp value)
      (multiple-value-bind (seconds millis)
          (if (>= (abs value) 100000000000) (floor value 1000) (values value 0))
        (multiple-value-bind (s mi h d mo y) (decode-universal-time (+ seconds 2208988800) 0)
          (format nil "~4,'0d-~2,'0d-~2,'0d ~2,'0d:~2,'0d:~2,'0d.~3,'0d+00" y mo d h mi s millis)))
      value))
