package httpapi

import (
	"encoding/base64"
	"net/http"
	"strconv"

	"github.com/twinhub/twinhub"
)

// Jobs v2: PUT, GET and cancel of one job, and the list of jobs.

func (a *API) putJob(r *http.Request) (int, any, error) {
	var j twinhub.Job
	if err := readJSON(r, &j); err != nil {
		return 0, nil, err
	}
	id := r.PathValue("id")
	if j.JobID != "" && j.JobID != id {
		return 0, nil, twinhub.ErrInvalid("jobId %q in the body does not match %q in the path", j.JobID, id)
	}
	j.JobID = id
	out, err := a.hub.CreateJob(r.Context(), j)
	return http.StatusOK, out, err
}

func (a *API) getJob(r *http.Request) (int, any, error) {
	j, err := a.hub.GetJob(r.Context(), r.PathValue("id"))
	return http.StatusOK, j, err
}

func (a *API) cancelJob(r *http.Request) (int, any, error) {
	j, err := a.hub.CancelJob(r.Context(), r.PathValue("id"))
	return http.StatusOK, j, err
}

// queryJobs is GET /jobs/v2/query?jobType=&jobStatus=: pages of jobs,
// x-ms-max-item-count and x-ms-continuation as for twin queries (older
// SDKs send pageSize and continuationToken in the query string). The
// token is the offset of the next page.
func (a *API) queryJobs(r *http.Request) (int, any, error) {
	q := r.URL.Query()
	s := r.Header.Get("x-ms-max-item-count")
	if s == "" {
		s = q.Get("pageSize")
	}
	size, err := pageSize(s)
	if err != nil {
		return 0, nil, err
	}
	offset := 0
	tok := r.Header.Get("x-ms-continuation")
	if tok == "" {
		tok = q.Get("continuationToken")
	}
	if tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		n, err2 := strconv.Atoi(string(b))
		if err != nil || err2 != nil || n < 0 {
			return 0, nil, twinhub.ErrInvalid("x-ms-continuation is not a token this hub issued")
		}
		offset = n
	}
	jobs, err := a.hub.QueryJobs(r.Context(), q.Get("jobType"), q.Get("jobStatus"))
	if err != nil {
		return 0, nil, err
	}
	offset = min(offset, len(jobs))
	end := min(offset+size, len(jobs))
	page := &twinhub.QueryPage{ItemType: "JobResponse"} // the jobs are the payload (jobsReply)
	if end < len(jobs) {
		page.Continuation = base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(end)))
	}
	return http.StatusOK, jobsReply{queryReply{page: page}, jobs[offset:end]}, nil
}

// jobsReply is a page of jobs with the headers of a query page.
type jobsReply struct {
	queryReply
	jobs []*twinhub.Job
}

func (j jobsReply) payload() any { return j.jobs }

// Import and export jobs: POST /jobs/create, GET /jobs, GET and DELETE
// (cancel) /jobs/{id}.

func (a *API) createImportExportJob(r *http.Request) (int, any, error) {
	var j twinhub.ImportExportJob
	if err := readJSON(r, &j); err != nil {
		return 0, nil, err
	}
	out, err := a.hub.CreateImportExportJob(r.Context(), j)
	return http.StatusOK, out, err
}

func (a *API) listImportExportJobs(r *http.Request) (int, any, error) {
	jobs, err := a.hub.ImportExportJobs(r.Context())
	if jobs == nil {
		jobs = []*twinhub.ImportExportJob{}
	}
	return http.StatusOK, jobs, err
}

func (a *API) getImportExportJob(r *http.Request) (int, any, error) {
	j, err := a.hub.GetImportExportJob(r.Context(), r.PathValue("id"))
	return http.StatusOK, j, err
}

func (a *API) cancelImportExportJob(r *http.Request) (int, any, error) {
	j, err := a.hub.CancelImportExportJob(r.Context(), r.PathValue("id"))
	return http.StatusOK, j, err
}
