-- depends: 0011.event_keys
-- Why an entry is what it is, as a stable code and the values of its sentence (libs/i18n/reasons.py):
-- the sentence is written when it is read, in the reader's language. `reason` keeps the English
-- sentence. Entries recorded before these columns have them NULL and are never updated (the ledger is
-- append-only): their code is read back from their English text when they are read.
ALTER TABLE ledger_transaction
    ADD COLUMN reason_code text,
    ADD COLUMN reason_params jsonb,
    ADD CONSTRAINT ledger_transaction_reason_code_check
        CHECK (reason_code IS NULL OR reason_code ~ '^[a-z_]+(\.[a-z_]+)*$'),
    ADD CONSTRAINT ledger_transaction_reason_params_object
        CHECK (reason_params IS NULL OR jsonb_typeof(reason_params) = 'object');
