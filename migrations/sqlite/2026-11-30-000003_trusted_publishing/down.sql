DROP TABLE used_id_tokens;
DROP TABLE trust_rules;
