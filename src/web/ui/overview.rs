//! The overview: what a team lead wants at a glance.

use std::sync::Arc;

use askama::Template;
use poem::http::StatusCode;
use poem::web::{Data, Query};
use poem::{IntoResponse, Request, Response, handler};

use super::extract::SignedIn;
use super::{Layout, human_bytes, render, unavailable};
use crate::db::browse::Totals;
use crate::db::traffic::{self, TrafficDelta};
use crate::services::dashboard::{self, Overview};
use crate::web::AppState;
use chrono::{Duration, NaiveDateTime};

const CHART_HOURS: i64 = 24;
const CHART_HEIGHT: f64 = 120.0;
const BAR_WIDTH: i64 = 24;
/// Room left of the bars for the y axis labels.
const CHART_LEFT: i64 = 44;

/// One hour of the traffic chart, already in SVG coordinates.
pub struct Bar {
    pub x: i64,
    /// The hour under the bar, on every sixth bar ("06:00").
    pub tick: Option<String>,
    pub hit_y: f64,
    pub hit_height: f64,
    pub miss_y: f64,
    pub miss_height: f64,
    pub label: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    layout: Layout,
    totals: Totals,
    bars: Vec<Bar>,
    /// Requests in the busiest hour: the top of the y axis.
    peak: i64,
    hits: i64,
    misses: i64,
    served: String,
    recent: Vec<(String, String, String)>,
    /// Bytes garbage collection deleted from storage in the last 30 days (all caches; shown
    /// to administrators only, as it counts storage shared with caches others cannot see).
    reclaimed: i64,
    /// What the page showed when drawn (see `dashboard::overview_stamp`): it asks every few
    /// seconds whether that changed, and redraws itself when it did.
    stamp: String,
}

#[derive(serde::Deserialize)]
pub struct LiveQuery {
    /// The stamp the page was drawn with: unchanged answers 204 and nothing is redrawn.
    live: Option<String>,
}

/// Stacked bars of narinfo hits (bottom) and misses (top) for each of the last 24 hours.
fn chart(hourly: &[(NaiveDateTime, TrafficDelta)], now_hour: NaiveDateTime) -> Vec<Bar> {
    let first = now_hour - Duration::hours(CHART_HOURS - 1);
    let counts: Vec<(NaiveDateTime, i64, i64)> = (0..CHART_HOURS)
        .map(|i| {
            let hour = first + Duration::hours(i);
            let d = hourly.iter().find(|(h, _)| *h == hour).map(|(_, d)| *d).unwrap_or_default();
            (hour, d.narinfo_hits, d.narinfo_misses)
        })
        .collect();
    let peak = counts.iter().map(|(_, h, m)| h + m).max().unwrap_or(0).max(1) as f64;
    counts
        .into_iter()
        .enumerate()
        .map(|(i, (hour, hits, misses))| {
            let hit_height = hits as f64 / peak * CHART_HEIGHT;
            let miss_height = misses as f64 / peak * CHART_HEIGHT;
            Bar {
                x: CHART_LEFT + i as i64 * BAR_WIDTH,
                tick: (i % 6 == 0).then(|| hour.format("%H:00").to_string()),
                hit_y: CHART_HEIGHT - hit_height,
                hit_height,
                miss_y: CHART_HEIGHT - hit_height - miss_height,
                miss_height,
                label: format!(
                    "{} UTC: {}, {}",
                    hour.format("%H:00"),
                    hibernation::human::count(hits, "hit", "hits"),
                    hibernation::human::count(misses, "miss", "misses")
                ),
            }
        })
        .collect()
}

impl OverviewPage {
    fn stored(&self) -> String {
        human_bytes(self.totals.stored_bytes)
    }

    fn saved(&self) -> String {
        human_bytes(self.totals.logical_bytes - self.totals.stored_bytes)
    }

    fn reclaimed(&self) -> String {
        human_bytes(self.reclaimed)
    }

    /// "1 miss", "2 misses".
    fn count(n: &i64, one: &str, many: &str) -> String {
        hibernation::human::count(*n, one, many)
    }
}

#[handler]
pub async fn overview(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Query(query): Query<LiveQuery>,
    SignedIn(user): SignedIn,
) -> Response {
    if let Some(seen) = query.live {
        match dashboard::overview_stamp(&state.db, &user).await {
            Ok(current) if current == seen => return StatusCode::NO_CONTENT.into_response(),
            Ok(_) => {}
            Err(e) => return unavailable(&state, req, &user, e),
        }
    }
    let now_hour = traffic::current_hour();
    let since = now_hour - Duration::hours(CHART_HOURS - 1);
    match dashboard::overview(&state.db, &user, since).await {
        Ok(Overview { totals, hourly, recent, reclaimed, stamp }) => {
            let sum = |f: fn(&TrafficDelta) -> i64| hourly.iter().map(|(_, d)| f(d)).sum::<i64>();
            let page = OverviewPage {
                layout: Layout::new(req, Some(&user)),
                totals,
                bars: chart(&hourly, now_hour),
                peak: hourly.iter().map(|(_, d)| d.narinfo_hits + d.narinfo_misses).max().unwrap_or(0),
                hits: sum(|d| d.narinfo_hits),
                misses: sum(|d| d.narinfo_misses),
                served: human_bytes(sum(|d| d.nar_bytes)),
                recent: recent.into_iter().map(|(c, p, at)| (c, p, at.format("%Y-%m-%d %H:%M").to_string())).collect(),
                reclaimed,
                stamp,
            };
            render(&state, StatusCode::OK, &page.layout, &page)
        }
        Err(e) => unavailable(&state, req, &user, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_busiest_hour() {
        let now_hour = chrono::NaiveDate::from_ymd_opt(2026, 11, 28).unwrap().and_hms_opt(12, 0, 0).unwrap();
        let busy = TrafficDelta { narinfo_hits: 3, narinfo_misses: 1, nar_bytes: 0 };
        let quiet = TrafficDelta { narinfo_hits: 1, narinfo_misses: 0, nar_bytes: 0 };
        let bars = chart(&[(now_hour, busy), (now_hour - Duration::hours(1), quiet)], now_hour);
        assert_eq!(bars.len(), 24);
        let last = &bars[23];
        assert_eq!(last.hit_height + last.miss_height, CHART_HEIGHT);
        assert_eq!(last.miss_y, 0.0);
        assert_eq!(bars[22].hit_height, CHART_HEIGHT / 4.0);
        assert_eq!(bars[0].hit_height, 0.0);
        assert!(last.label.starts_with("12:00 UTC: 3 hits, 1 miss"));
    }
}
