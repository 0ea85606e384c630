//! Rendering: pure functions of [`App`] into a ratatui `Frame`. The only output besides the
//! frame is [`Hits`] (where sentences and panes landed), which the loop stores for the mouse.

pub mod chart;
pub mod compare;
pub mod context;
pub mod detail;
pub mod help;
pub mod layout;
pub mod list;
pub mod popup;
pub mod rollouts;
pub mod scrolled;
pub mod status;
pub mod trace;
pub mod wrap;

use ratatui::Frame;

use super::app::{App, Hits, Popup, Screen};

/// Draw the whole screen for the current state.
pub fn draw(frame: &mut Frame, app: &App) -> Hits {
    let mut hits = Hits::default();
    let area = frame.area();
    if area.width < 4 || area.height < 2 {
        return hits; // nothing readable fits; drawing nothing beats panicking
    }
    let (main, status_area) = layout::split_status(area);
    match app.screen {
        Screen::List => list::render(frame, main, app, &mut hits),
        Screen::Trace => trace::render_screen(frame, main, app, &mut hits),
        Screen::Compare => compare::render(frame, main, app, &mut hits),
    }
    status::render(frame, status_area, app);
    match &app.popup {
        Some(Popup::Help { scroll }) => help::render(frame, area, app, *scroll, &mut hits),
        Some(Popup::Export { selected }) => popup::render_export(frame, area, app, *selected),
        Some(Popup::Context { scroll, expanded }) => {
            context::render(frame, main, app, *scroll, *expanded, &mut hits)
        }
        Some(Popup::Rollouts(b)) => rollouts::render(frame, main, app, b, &mut hits),
        Some(Popup::Jobs { selected }) => popup::render_jobs(frame, area, app, *selected),
        Some(Popup::Confirm(q)) => popup::render_confirm(frame, area, app, q),
        None => {}
    }
    hits
}
