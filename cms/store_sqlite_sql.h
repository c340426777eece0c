/* store_sqlite_sql.h - every SQL string of the SQLite backend: the statements by
 * CMS_SQL_* number and the migrations by version. Parameters are bound (?N), never
 * spliced. Included once, by store_sqlite.c. Keep in step with store_pg_sql.h:
 * same statements, same parameters, same result columns (see store.h).
 */
#ifndef CMS_STORE_SQLITE_SQL_H
#define CMS_STORE_SQLITE_SQL_H

#include "store.h"

/* ---- migrations: [0] is version 1 ------------------------------------------------- */

static const char *const sqlite_migrations[] = {
    /* 1: the content model */
    "CREATE TABLE users ("
    "  id INTEGER PRIMARY KEY,"
    "  slug TEXT NOT NULL UNIQUE,"
    "  name TEXT NOT NULL,"
    "  email TEXT UNIQUE,"
    "  password_hash TEXT,"
    "  role INTEGER NOT NULL DEFAULT 1,"
    "  bio TEXT, profile_image TEXT, website TEXT, location TEXT,"
    "  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
    "CREATE TABLE posts ("
    "  id INTEGER PRIMARY KEY,"
    "  type INTEGER NOT NULL DEFAULT 0,"
    "  status INTEGER NOT NULL DEFAULT 0,"
    "  title TEXT NOT NULL,"
    "  slug TEXT NOT NULL UNIQUE,"
    "  markdown TEXT NOT NULL DEFAULT '',"
    "  html TEXT NOT NULL DEFAULT '',"
    "  plaintext TEXT NOT NULL DEFAULT '',"
    "  custom_excerpt TEXT, feature_image TEXT, feature_image_alt TEXT,"
    "  feature_image_caption TEXT,"
    "  featured INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, published_at INTEGER,"
    "  meta_title TEXT, meta_description TEXT, og_title TEXT, og_description TEXT,"
    "  og_image TEXT, canonical_url TEXT,"
    "  preview_token TEXT NOT NULL UNIQUE);"
    "CREATE INDEX posts_listing ON posts (type, status, published_at DESC);"
    "CREATE TABLE slug_redirects ("
    "  slug TEXT PRIMARY KEY,"
    "  post_id INTEGER NOT NULL REFERENCES posts (id) ON DELETE CASCADE);"
    "CREATE TABLE tags ("
    "  id INTEGER PRIMARY KEY,"
    "  slug TEXT NOT NULL UNIQUE,"
    "  name TEXT NOT NULL,"
    "  description TEXT, feature_image TEXT, meta_title TEXT, meta_description TEXT,"
    "  internal INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
    "CREATE TABLE posts_tags ("
    "  post_id INTEGER NOT NULL REFERENCES posts (id) ON DELETE CASCADE,"
    "  tag_id INTEGER NOT NULL REFERENCES tags (id) ON DELETE CASCADE,"
    "  sort_order INTEGER NOT NULL,"
    "  PRIMARY KEY (post_id, tag_id));"
    "CREATE INDEX posts_tags_tag ON posts_tags (tag_id);"
    "CREATE TABLE posts_authors ("
    "  post_id INTEGER NOT NULL REFERENCES posts (id) ON DELETE CASCADE,"
    "  user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,"
    "  sort_order INTEGER NOT NULL,"
    "  PRIMARY KEY (post_id, user_id));"
    "CREATE INDEX posts_authors_user ON posts_authors (user_id);"
    "CREATE TABLE revisions ("
    "  id INTEGER PRIMARY KEY,"
    "  post_id INTEGER NOT NULL REFERENCES posts (id) ON DELETE CASCADE,"
    "  title TEXT NOT NULL, markdown TEXT NOT NULL,"
    "  user_id INTEGER REFERENCES users (id) ON DELETE SET NULL,"
    "  reason TEXT, created_at INTEGER NOT NULL);"
    "CREATE INDEX revisions_post ON revisions (post_id, id);"
    "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE api_keys ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL, kind TEXT NOT NULL, secret_hash TEXT NOT NULL,"
    "  user_id INTEGER REFERENCES users (id) ON DELETE CASCADE,"
    "  created_at INTEGER NOT NULL, last_used_at INTEGER);"
    "CREATE TABLE content_state (id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  version INTEGER NOT NULL);"
    "INSERT INTO content_state (id, version) VALUES (1, 0);"
    "INSERT INTO settings (key, value) VALUES"
    "  ('title', 'OneBlog'), ('description', 'Thoughts, stories and ideas.'),"
    "  ('url', 'http://127.0.0.1:8080'), ('timezone', 'UTC'), ('locale', 'en'),"
    "  ('posts_per_page', '10'),"
    "  ('navigation', '[{\"label\":\"Home\",\"url\":\"/\"},{\"label\":\"About\",\"url\":\"/about/\"}]');",

    /* 2: full-text search over titles and bodies (external-content FTS5 table kept
     * in step by triggers; porter stemming as PostgreSQL's 'english') */
    "CREATE VIRTUAL TABLE posts_fts USING fts5(title, plaintext, content='posts',"
    "  content_rowid='id', tokenize='porter unicode61 remove_diacritics 2');"
    "INSERT INTO posts_fts (rowid, title, plaintext) SELECT id, title, plaintext FROM posts;"
    "CREATE TRIGGER posts_fts_ai AFTER INSERT ON posts BEGIN"
    "  INSERT INTO posts_fts (rowid, title, plaintext) VALUES (new.id, new.title, new.plaintext);"
    "END;"
    "CREATE TRIGGER posts_fts_ad AFTER DELETE ON posts BEGIN"
    "  INSERT INTO posts_fts (posts_fts, rowid, title, plaintext)"
    "    VALUES ('delete', old.id, old.title, old.plaintext);"
    "END;"
    "CREATE TRIGGER posts_fts_au AFTER UPDATE OF title, plaintext ON posts BEGIN"
    "  INSERT INTO posts_fts (posts_fts, rowid, title, plaintext)"
    "    VALUES ('delete', old.id, old.title, old.plaintext);"
    "  INSERT INTO posts_fts (rowid, title, plaintext) VALUES (new.id, new.title, new.plaintext);"
    "END;",
};

/* ---- statements ---------------------------------------------------------------------- */

#define POST_COLS                                                                          \
    "p.id, p.type, p.status, p.title, p.slug, p.html, p.plaintext, p.custom_excerpt, "     \
    "p.feature_image, p.feature_image_alt, p.feature_image_caption, p.featured, "          \
    "p.created_at, p.updated_at, p.published_at, p.meta_title, p.meta_description, "       \
    "p.og_title, p.og_description, p.og_image, p.canonical_url, p.markdown, p.preview_token"
#define TAG_COLS \
    "t.id, t.slug, t.name, t.description, t.feature_image, t.meta_title, t.meta_description, t.internal"
#define AUTHOR_COLS "u.id, u.slug, u.name, u.bio, u.profile_image, u.website, u.location"
#define TAG_COUNT                                                                          \
    "(SELECT count(*) FROM posts_tags pt JOIN posts p ON p.id = pt.post_id"                \
    " WHERE pt.tag_id = t.id AND p.status = 2 AND p.type = 0)"
#define AUTHOR_COUNT                                                                       \
    "(SELECT count(*) FROM posts_authors pa JOIN posts p ON p.id = pa.post_id"             \
    " WHERE pa.user_id = u.id AND p.status = 2 AND p.type = 0)"
#define LIST_WHERE                                                                         \
    " WHERE p.type = ?1 AND p.status = ?2"                                                 \
    " AND (?3 IS NULL OR EXISTS (SELECT 1 FROM posts_tags pt JOIN tags t ON t.id = pt.tag_id" \
    "   WHERE pt.post_id = p.id AND t.slug = ?3))"                                         \
    " AND (?4 IS NULL OR EXISTS (SELECT 1 FROM posts_authors pa JOIN users u"              \
    "   ON u.id = pa.user_id WHERE pa.post_id = p.id AND u.slug = ?4))"                    \
    " AND (?5 IS NULL OR p.featured = ?5)"
/* The admin's listing: any status when ?2 is NULL. */
#define STAFF_WHERE                                                                        \
    " WHERE p.type = ?1 AND (?2 IS NULL OR p.status = ?2)"                                 \
    " AND (?3 IS NULL OR EXISTS (SELECT 1 FROM posts_tags pt JOIN tags t ON t.id = pt.tag_id" \
    "   WHERE pt.post_id = p.id AND t.slug = ?3))"                                         \
    " AND (?4 IS NULL OR EXISTS (SELECT 1 FROM posts_authors pa JOIN users u"              \
    "   ON u.id = pa.user_id WHERE pa.post_id = p.id AND u.slug = ?4))"                    \
    " AND (?5 IS NULL OR p.featured = ?5)"
/* The words (see search_words in posts.c) as FTS5 strings: "a" "b" = a AND b. */
#define SEARCH_WHERE                                                                       \
    " FROM posts_fts JOIN posts p ON p.id = posts_fts.rowid"                               \
    " WHERE posts_fts MATCH ('\"' || replace(?1, ' ', '\" \"') || '\"')"                   \
    " AND p.status = 2 AND p.type = 0"

static const char *const sqlite_sql[CMS_SQL__COUNT] = {
    [CMS_SQL_BEGIN_READ] = "BEGIN",
    [CMS_SQL_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [CMS_SQL_COMMIT] = "COMMIT",
    [CMS_SQL_ROLLBACK] = "ROLLBACK",
    [CMS_SQL_MIGRATIONS_TABLE] = "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                 "version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    [CMS_SQL_MIGRATIONS_LOCK] = "SELECT 1", /* BEGIN IMMEDIATE holds the write lock */
    [CMS_SQL_MIGRATIONS_MAX] = "SELECT coalesce(max(version), 0) FROM schema_migrations",
    [CMS_SQL_MIGRATIONS_ADD] = "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
    [CMS_SQL_VERSION_GET] = "SELECT version FROM content_state WHERE id = 1",
    [CMS_SQL_VERSION_BUMP] =
        "UPDATE content_state SET version = version + 1 WHERE id = 1 RETURNING version",

    [CMS_SQL_POST_BY_ID] = "SELECT " POST_COLS " FROM posts p WHERE p.id = ?1",
    [CMS_SQL_POST_BY_SLUG] =
        "SELECT " POST_COLS " FROM posts p WHERE p.type = ?1 AND p.slug = ?2 AND p.status = 2",
    [CMS_SQL_POST_BY_TOKEN] = "SELECT " POST_COLS " FROM posts p WHERE p.preview_token = ?1",
    [CMS_SQL_POST_ID_BY_SLUG] = "SELECT id FROM posts WHERE slug = ?1",
    [CMS_SQL_REDIRECT_GET] = "SELECT p.slug FROM slug_redirects r JOIN posts p ON p.id = r.post_id"
                             " WHERE r.slug = ?1 AND p.type = ?2 AND p.status = 2",
    [CMS_SQL_REDIRECT_PUT] = "INSERT INTO slug_redirects (slug, post_id) VALUES (?1, ?2)"
                             " ON CONFLICT (slug) DO UPDATE SET post_id = excluded.post_id",
    [CMS_SQL_REDIRECT_DEL] = "DELETE FROM slug_redirects WHERE slug = ?1",
    [CMS_SQL_POST_INSERT] =
        "INSERT INTO posts (type, status, title, slug, markdown, html, plaintext,"
        " custom_excerpt, feature_image, feature_image_alt, feature_image_caption, featured,"
        " created_at, updated_at, published_at, meta_title, meta_description, og_title,"
        " og_description, og_image, canonical_url, preview_token)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,"
        " ?18, ?19, ?20, ?21, ?22) RETURNING id",
    [CMS_SQL_POST_UPDATE] =
        "UPDATE posts SET type = ?1, status = ?2, title = ?3, slug = ?4, markdown = ?5,"
        " html = ?6, plaintext = ?7, custom_excerpt = ?8, feature_image = ?9,"
        " feature_image_alt = ?10, feature_image_caption = ?11, featured = ?12,"
        " created_at = ?13, updated_at = ?14, published_at = ?15, meta_title = ?16,"
        " meta_description = ?17, og_title = ?18, og_description = ?19, og_image = ?20,"
        " canonical_url = ?21, preview_token = ?22 WHERE id = ?23",
    [CMS_SQL_POST_DELETE] = "DELETE FROM posts WHERE id = ?1",
    [CMS_SQL_POST_SET_STATUS] =
        "UPDATE posts SET status = ?2, published_at = ?3, updated_at = ?4 WHERE id = ?1",
    [CMS_SQL_POST_LIST] = "SELECT " POST_COLS " FROM posts p" LIST_WHERE
                          " ORDER BY p.published_at DESC, p.id DESC LIMIT ?6 OFFSET ?7",
    [CMS_SQL_POST_COUNT] = "SELECT count(*) FROM posts p" LIST_WHERE,
    [CMS_SQL_POST_MANY] = "SELECT " POST_COLS " FROM posts p WHERE p.status = 2"
                          " AND p.id IN (SELECT value FROM json_each(?1))",
    [CMS_SQL_POST_DUE] = "SELECT id FROM posts WHERE status = 1 AND published_at <= ?1"
                         " ORDER BY published_at, id",
    [CMS_SQL_POST_PUBLISH_DUE] = "UPDATE posts SET status = 2, updated_at = ?2"
                                 " WHERE id = ?1 AND status = 1 AND published_at <= ?2"
                                 " RETURNING id",
    [CMS_SQL_POST_NEXT_DUE] = "SELECT min(published_at) FROM posts WHERE status = 1",
    [CMS_SQL_POST_SEARCH] = "SELECT " POST_COLS SEARCH_WHERE
                            " ORDER BY bm25(posts_fts, 10.0, 1.0), p.published_at DESC"
                            " LIMIT ?2 OFFSET ?3",
    [CMS_SQL_POST_SEARCH_COUNT] = "SELECT count(*)" SEARCH_WHERE,
    [CMS_SQL_POST_ALL_IDS] = "SELECT id FROM posts ORDER BY id",
    [CMS_SQL_POST_COUNT_ALL] = "SELECT count(*) FROM posts",

    [CMS_SQL_POST_TAGS] = "SELECT " TAG_COLS ", pt.post_id FROM posts_tags pt"
                          " JOIN tags t ON t.id = pt.tag_id"
                          " WHERE pt.post_id IN (SELECT value FROM json_each(?1))"
                          " ORDER BY pt.post_id, pt.sort_order",
    [CMS_SQL_POST_TAGS_DEL] = "DELETE FROM posts_tags WHERE post_id = ?1",
    [CMS_SQL_POST_TAG_ADD] =
        "INSERT INTO posts_tags (post_id, tag_id, sort_order) VALUES (?1, ?2, ?3)",
    [CMS_SQL_POST_AUTHORS] = "SELECT " AUTHOR_COLS ", pa.post_id FROM posts_authors pa"
                             " JOIN users u ON u.id = pa.user_id"
                             " WHERE pa.post_id IN (SELECT value FROM json_each(?1))"
                             " ORDER BY pa.post_id, pa.sort_order",
    [CMS_SQL_POST_AUTHORS_DEL] = "DELETE FROM posts_authors WHERE post_id = ?1",
    [CMS_SQL_POST_AUTHOR_ADD] =
        "INSERT INTO posts_authors (post_id, user_id, sort_order) VALUES (?1, ?2, ?3)",
    [CMS_SQL_TAG_BY_SLUG] = "SELECT " TAG_COLS ", " TAG_COUNT " FROM tags t WHERE t.slug = ?1",
    [CMS_SQL_TAG_INSERT] =
        "INSERT INTO tags (slug, name, description, feature_image, meta_title,"
        " meta_description, internal, created_at, updated_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8) RETURNING id",
    [CMS_SQL_TAG_UPDATE] = "UPDATE tags SET name = ?2, description = ?3, feature_image = ?4,"
                           " meta_title = ?5, meta_description = ?6, internal = ?7,"
                           " updated_at = ?8 WHERE id = ?1",
    [CMS_SQL_TAG_LIST] = "SELECT " TAG_COLS ", " TAG_COUNT " FROM tags t"
                         " WHERE ?1 = 1 OR t.internal = 0 ORDER BY t.name, t.id",
    [CMS_SQL_AUTHOR_BY_SLUG] =
        "SELECT " AUTHOR_COLS ", " AUTHOR_COUNT " FROM users u WHERE u.slug = ?1",
    [CMS_SQL_AUTHOR_LIST] = "SELECT " AUTHOR_COLS ", " AUTHOR_COUNT " FROM users u"
                            " ORDER BY u.name, u.id",

    [CMS_SQL_USER_INSERT] =
        "INSERT INTO users (slug, name, email, password_hash, role, bio, profile_image,"
        " website, location, created_at, updated_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10) RETURNING id",
    [CMS_SQL_USER_BY_EMAIL] = "SELECT " AUTHOR_COLS ", 0, u.email, u.password_hash, u.role"
                              " FROM users u WHERE u.email = ?1",
    [CMS_SQL_USER_COUNT] = "SELECT count(*) FROM users WHERE email IS NOT NULL",
    [CMS_SQL_APIKEY_INSERT] = "INSERT INTO api_keys (name, kind, secret_hash, user_id, created_at)"
                              " VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",

    [CMS_SQL_REVISION_ADD] =
        "INSERT INTO revisions (post_id, title, markdown, user_id, reason, created_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [CMS_SQL_REVISION_LIST] = "SELECT id, post_id, title, markdown, user_id, reason, created_at"
                              " FROM revisions WHERE post_id = ?1 ORDER BY id DESC",
    [CMS_SQL_REVISION_GET] = "SELECT title, markdown FROM revisions WHERE id = ?1 AND post_id = ?2",

    [CMS_SQL_SETTINGS_ALL] = "SELECT key, value FROM settings",
    [CMS_SQL_SETTING_PUT] = "INSERT INTO settings (key, value) VALUES (?1, ?2)"
                            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",

    [CMS_SQL_SITEMAP_POSTS] = "SELECT slug, type, updated_at FROM posts WHERE status = 2"
                              " ORDER BY published_at DESC, id DESC",
    [CMS_SQL_SITEMAP_TAGS] = "SELECT t.slug, max(p.updated_at) FROM tags t"
                             " JOIN posts_tags pt ON pt.tag_id = t.id"
                             " JOIN posts p ON p.id = pt.post_id"
                             " WHERE p.status = 2 AND p.type = 0 AND t.internal = 0"
                             " GROUP BY t.id, t.slug ORDER BY t.slug",
    [CMS_SQL_SITEMAP_AUTHORS] = "SELECT u.slug, max(p.updated_at) FROM users u"
                                " JOIN posts_authors pa ON pa.user_id = u.id"
                                " JOIN posts p ON p.id = pa.post_id"
                                " WHERE p.status = 2 AND p.type = 0"
                                " GROUP BY u.id, u.slug ORDER BY u.slug",

    [CMS_SQL_POST_STAFF_LIST] = "SELECT " POST_COLS " FROM posts p" STAFF_WHERE
                                " ORDER BY p.updated_at DESC, p.id DESC LIMIT ?6 OFFSET ?7",
    [CMS_SQL_POST_STAFF_COUNT] = "SELECT count(*) FROM posts p" STAFF_WHERE,
    [CMS_SQL_USER_BY_ID] = "SELECT " AUTHOR_COLS ", 0, u.email, u.password_hash, u.role"
                           " FROM users u WHERE u.id = ?1",
    [CMS_SQL_USER_LIST] = "SELECT " AUTHOR_COLS ", 0, u.email, u.password_hash, u.role"
                          " FROM users u ORDER BY u.role DESC, u.name, u.id",
    [CMS_SQL_USER_SET_ROLE] = "UPDATE users SET role = ?2, updated_at = ?3 WHERE id = ?1",
    [CMS_SQL_APIKEY_BY_ID] = "SELECT kind, secret_hash, user_id FROM api_keys WHERE id = ?1",
};

#undef POST_COLS
#undef TAG_COLS
#undef AUTHOR_COLS
#undef TAG_COUNT
#undef AUTHOR_COUNT
#undef LIST_WHERE
#undef STAFF_WHERE
#undef SEARCH_WHERE

#endif /* CMS_STORE_SQLITE_SQL_H */
