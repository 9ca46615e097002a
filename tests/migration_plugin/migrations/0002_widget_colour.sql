-- requires: kijko:0002
ALTER TABLE widgets.widgets ADD COLUMN colour text;
