//! Both engines carry the same migrations, so a change to one cannot be forgotten in the other.

#[test]
fn sqlite_and_postgres_migrations_have_the_same_file_names() {
    let names = |dir: &str| {
        let mut v: Vec<String> =
            std::fs::read_dir(format!("{}/migrations/{dir}", env!("CARGO_MANIFEST_DIR")))
                .expect("migrations dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
        v.sort();
        v
    };
    let sqlite = names("sqlite");
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, names("postgres"));
}

#[test]
fn sqlite_and_postgres_migrations_create_the_same_tables_and_columns() {
    // Compare the table/column skeleton of each pair of files (types differ by engine).
    let skeleton = |dir: &str, file: &str| -> Vec<String> {
        let text = std::fs::read_to_string(format!(
            "{}/migrations/{dir}/{file}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("migration");
        text.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("--") && !l.is_empty())
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
            .collect()
    };
    for entry in
        std::fs::read_dir(format!("{}/migrations/sqlite", env!("CARGO_MANIFEST_DIR"))).expect("dir")
    {
        let file = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        // A pair may differ on purpose (an engine-only trigger); both files must then say so.
        let marked = |dir: &str| {
            std::fs::read_to_string(format!(
                "{}/migrations/{dir}/{file}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .expect("migration")
            .starts_with("-- engine-specific:")
        };
        if marked("sqlite") && marked("postgres") {
            continue;
        }
        assert_eq!(
            skeleton("sqlite", &file),
            skeleton("postgres", &file),
            "{file}"
        );
    }
}
