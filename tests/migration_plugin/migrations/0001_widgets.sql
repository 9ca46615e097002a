-- A plugin's table in its own schema, reachable by the app role only through grants made here.
-- requires: kijko:0001
CREATE SCHEMA widgets;
GRANT USAGE ON SCHEMA widgets TO :app_role;

CREATE TABLE widgets.widgets (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES kijko.organizations (id) ON DELETE CASCADE,
    name text NOT NULL
);
GRANT SELECT, INSERT ON widgets.widgets TO :app_role;
